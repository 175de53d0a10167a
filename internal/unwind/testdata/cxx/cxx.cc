// C++ threads parked where exception handling shapes the frames:
//
//   catcher: catcher_main -> outer (try/catch; the catch block, where the
//            thread sleeps, is in outer's .cold part at -O2) -> in_catch
//            -> cxx_sleep -> nanosleep
//   guarded: guarded_main -> with_guard (an object with a destructor, so
//            a cleanup landing pad) -> cxx_sleep -> nanosleep
//   main:    main -> pthread_join
//
// The protocol is that of testdata/stacks: "thread NAME TID", "ready".
#include <pthread.h>
#include <stdexcept>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KEEP __attribute__((noipa))
#define BARRIER() __asm__ volatile("" ::: "memory")

static volatile int parked;

extern "C" {

KEEP void cxx_sleep(const char *name)
{
	printf("thread %s %ld\n", name, (long)syscall(SYS_gettid));
	fflush(stdout);
	__sync_fetch_and_add(&parked, 1);
	struct timespec ts = {100000, 0};
	for (;;)
		nanosleep(&ts, nullptr);
}

KEEP void thrower(int x)
{
	if (x > 0)
		throw std::runtime_error("parked in a catch block");
	BARRIER();
}

KEEP void in_catch(const std::exception &e)
{
	if (e.what()[0])
		cxx_sleep("catcher");
	BARRIER();
}

KEEP int outer(int x)
{
	try {
		thrower(x);
	} catch (const std::exception &e) {
		in_catch(e);
	}
	BARRIER();
	return x;
}

struct Guard {
	int *p;
	explicit Guard(int *q) : p(q) { ++*p; }
	~Guard() { --*p; }
};

static int guards;

KEEP void with_guard(void)
{
	Guard g(&guards);
	cxx_sleep("guarded");
	BARRIER();
}

KEEP void *catcher_main(void *) { outer(1); BARRIER(); return nullptr; }
KEEP void *guarded_main(void *) { with_guard(); BARRIER(); return nullptr; }

} // extern "C"

int main()
{
	pthread_t t[2];
	pthread_create(&t[0], nullptr, catcher_main, nullptr);
	pthread_create(&t[1], nullptr, guarded_main, nullptr);
	while (parked < 2)
		usleep(1000);
	printf("thread main %ld\nready\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	pthread_join(t[0], nullptr);
	return 0;
}
