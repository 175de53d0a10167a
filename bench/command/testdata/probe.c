/* The probe the command bench patches. N threads; in "spin" mode all of
 * them spin on clock_gettime, in "sleep" mode thread 0 spins and the
 * others sleep 1 ms at a time. Every thread logs each gap it sees (two
 * consecutive clock readings further apart than the threshold, or a
 * sleep that ended later than asked by more than it) into its own ring in
 * a shared file, so the bench reads the gaps without touching the probe
 * while it is measured. work() is the function the bench patches.
 *
 *   probe NTHREADS spin|sleep SHMFILE THRESHOLD_NS
 *
 * File layout (little-endian uint64s): magic, nthreads, ring capacity,
 * then per thread: count, then capacity records of {start_ns, end_ns}
 * (CLOCK_MONOTONIC); record i lives in slot i % capacity. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x65626f7270706875ULL /* "uhpprobe" */
#define CAP 4096

struct gap { uint64_t start, end; };
struct ring { uint64_t count; struct gap g[CAP]; };

static struct ring *rings;
static long long threshold;
static int spin_all;

__attribute__((noinline)) int work(int x) { return x + 1; }

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void record(struct ring *r, long long start, long long end) {
	uint64_t n = __atomic_load_n(&r->count, __ATOMIC_RELAXED);
	r->g[n % CAP].start = start;
	r->g[n % CAP].end = end;
	__atomic_store_n(&r->count, n + 1, __ATOMIC_RELEASE);
}

static void spin(struct ring *r) {
	volatile int sink = 0;
	long long last = now_ns();
	for (;;) {
		long long now = now_ns();
		if (now - last > threshold)
			record(r, last, now);
		last = now;
		sink += work(sink);
	}
}

static void sleep_loop(struct ring *r) {
	for (;;) {
		struct timespec ts = {0, 1000000};
		long long due = now_ns() + 1000000;
		nanosleep(&ts, NULL);
		long long now = now_ns();
		if (now - due > threshold)
			record(r, due, now);
		work(0);
	}
}

static void *thread(void *arg) {
	struct ring *r = arg;
	if (spin_all)
		spin(r);
	else
		sleep_loop(r);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: probe NTHREADS spin|sleep SHMFILE THRESHOLD_NS\n");
		return 2;
	}
	int n = atoi(argv[1]);
	spin_all = strcmp(argv[2], "spin") == 0;
	threshold = atoll(argv[4]);
	size_t size = 3 * 8 + (size_t)n * sizeof(struct ring);
	int fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, size) != 0) {
		perror(argv[3]);
		return 1;
	}
	uint64_t *hdr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (hdr == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	/* Touch every page now: a first-touch fault must not show up as a
	 * gap during a measurement. */
	memset(hdr, 0, size);
	hdr[1] = n;
	hdr[2] = CAP;
	rings = (struct ring *)(hdr + 3);
	pthread_t t;
	for (int i = 1; i < n; i++)
		pthread_create(&t, NULL, thread, &rings[i]);
	__atomic_store_n(&hdr[0], MAGIC, __ATOMIC_RELEASE);
	printf("ready\n");
	fflush(stdout);
	spin(&rings[0]);
	return 0;
}
