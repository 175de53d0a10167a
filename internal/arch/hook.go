package arch

// ReturnHook is code placed where a watched frame returns to instead of
// its caller: it enters the kernel once with a harmless system call, at
// which a tracer that resumed the thread with PTRACE_SYSCALL sees it stop,
// and then continues at the real return address with every register as
// the returning function left it. Without a tracer the system call is
// just made and the program goes on: a hook left behind by a tracer that
// died costs the program one system call and nothing else.
type ReturnHook struct {
	// Code is the hook, Size bytes long at most; Entry is the offset the
	// return address points to.
	Code  []byte
	Entry int
	// Stop is the offset of the program counter at the system call's
	// entry stop (just past the system call instruction).
	Stop int
	// Nr is the system call the hook makes.
	Nr int
	// Saved lists, for a thread stopped at Stop, the registers the hook
	// pushed, by DWARF number, in the order they sit on the stack from the
	// stack pointer upwards; SavedSize is how far the stack pointer is
	// below the caller's.
	Saved     []int
	SavedSize uint64
}

// ReturnHookSize is the room one hook takes in a page of hooks.
const ReturnHookSize = 32
