/* The benchmark target. N threads; in "spin" mode all of them spin on
 * clock_gettime, in "sleep" mode one spins and the others sleep. Every
 * spinner records the longest time during which no thread of the process
 * made progress: that is the pause a patch causes, as the program sees
 * it. The benchmark reads and resets the record (max_gap, in nanoseconds)
 * in the target's memory, so no control thread is needed: the thread
 * counts are exact. work() is the function the benchmark patches. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long last_progress, max_gap;

__attribute__((noinline)) int work(int x) { return x + 1; }

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *spinner(void *arg) {
	volatile int sink = 0;
	for (;;) {
		long long now = now_ns();
		long long last = __atomic_exchange_n(&last_progress, now, __ATOMIC_RELAXED);
		long long gap = now - last;
		long long m = __atomic_load_n(&max_gap, __ATOMIC_RELAXED);
		while (last != 0 && gap > m && !__atomic_compare_exchange_n(&max_gap, &m, gap, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
		sink += work(sink);
	}
	return arg;
}

static void *sleeper(void *arg) {
	for (;;) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		work(0);
	}
	return arg;
}

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1;
	int spin = argc > 2 && strcmp(argv[2], "spin") == 0;
	pthread_t t;
	for (int i = 1; i < n; i++)
		pthread_create(&t, NULL, spin ? spinner : sleeper, NULL);
	printf("ready\n");
	fflush(stdout);
	spinner(NULL);
	return 0;
}
