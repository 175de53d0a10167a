package arch

import "encoding/binary"

// The x86-64 resume block: the 16 general registers by hardware number
// (rax rcx rdx rbx rsp rbp rsi rdi r8..r15), then rip, rflags, a stack
// pointer below the red zone for the flags' push and pop, the thread id
// the marker signal goes to, and the signal.
const (
	amd64BlockRIP   = 16
	amd64BlockFlags = 17
	amd64BlockTmpSP = 18
	amd64BlockTid   = 19
	amd64BlockSig   = 20
	amd64TgkillNr   = 234
	amd64RSP        = 4
	// Single-step (TF) and resume (RF) flags are the tracer's business,
	// never the program's.
	amd64FlagsMask = ^uint64(0x100 | 0x10000)
)

// amd64DWARFToHW maps DWARF register numbers 0 to 15 to hardware numbers.
var amd64DWARFToHW = [16]int{0, 2, 1, 3, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15}

func resumeBlockAMD64(st ResumeState, tid, sig int) []byte {
	var words [ResumeBlockSize / 8]uint64
	for dw, hw := range amd64DWARFToHW {
		words[hw] = st.Regs[dw]
	}
	words[amd64BlockRIP] = st.PC
	words[amd64BlockFlags] = st.Flags & amd64FlagsMask
	words[amd64BlockTmpSP] = (words[amd64RSP] - 128 - 64) &^ 15
	words[amd64BlockTid] = uint64(tid)
	words[amd64BlockSig] = uint64(sig)
	b := make([]byte, 0, ResumeBlockSize)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

func encodeResumeAMD64(at, block uint64, tgid int) ResumeCode {
	var c []byte
	// rip-relative operand: disp32 from the end of the instruction.
	ripRel := func(insn []byte, slot int) {
		end := at + uint64(len(c)+len(insn)+4)
		disp := int32(int64(block+uint64(8*slot)) - int64(end))
		c = append(c, insn...)
		c = binary.LittleEndian.AppendUint32(c, uint32(disp))
	}
	c = append(c, 0xb8) // mov $tgkill, %eax
	c = binary.LittleEndian.AppendUint32(c, amd64TgkillNr)
	c = append(c, 0x48, 0xbf) // movabs $tgid, %rdi
	c = binary.LittleEndian.AppendUint64(c, uint64(tgid))
	ripRel([]byte{0x48, 0x8b, 0x35}, amd64BlockTid) // mov tid(%rip), %rsi
	ripRel([]byte{0x48, 0x8b, 0x15}, amd64BlockSig) // mov sig(%rip), %rdx
	c = append(c, 0x0f, 0x05)                       // syscall
	marker := len(c)
	ripRel([]byte{0x48, 0x8b, 0x25}, amd64BlockTmpSP) // mov tmpsp(%rip), %rsp
	ripRel([]byte{0xff, 0x35}, amd64BlockFlags)       // push flags(%rip)
	c = append(c, 0x9d)                               // popfq
	for hw := 0; hw < 16; hw++ {
		if hw == amd64RSP {
			continue
		}
		rex := byte(0x48)
		if hw >= 8 {
			rex |= 0x04 // REX.R
		}
		ripRel([]byte{rex, 0x8b, byte(hw&7)<<3 | 0x05}, hw) // mov slot(%rip), %reg
	}
	ripRel([]byte{0x48, 0x8b, 0x25}, amd64RSP) // mov rsp(%rip), %rsp
	ripRel([]byte{0xff, 0x25}, amd64BlockRIP)  // jmp *rip(%rip)
	return ResumeCode{Code: c, Marker: marker}
}
