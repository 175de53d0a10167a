/* N threads (argv[1], default 64) parked in nanosleep at the bottom of a
 * five-function chain, as a service's idle worker threads are: the
 * target of the unwinding benchmark. Protocol of testdata/stacks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define KEEP __attribute__((noipa))
#define BARRIER() __asm__ volatile("" ::: "memory")

static volatile int parked;

KEEP void idle(void)
{
	struct timespec ts = {100000, 0};
	printf("thread worker %ld\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	__sync_fetch_and_add(&parked, 1);
	for (;;)
		nanosleep(&ts, NULL);
}

KEEP void wait_for_work(int n) { idle(); BARRIER(); (void)n; }
KEEP void dispatch(int n) { wait_for_work(n + 1); BARRIER(); }
KEEP void serve(int n) { dispatch(n + 1); BARRIER(); }
KEEP void *worker(void *arg) { serve((int)(long)arg); BARRIER(); return NULL; }

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 64;
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 1 << 16);
		if (pthread_create(&t, &a, worker, (void *)(long)i) != 0)
			return 1;
	}
	while (parked < n)
		usleep(1000);
	printf("thread main %ld\nready\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	pause();
	return 0;
}
