#include "harness.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <time.h>

#define HOT 8

static volatile int salt = 5;
static atomic_long old_calls, new_calls, bad_calls, eintr;
static int pipefd[2];
static int futex_word;

/* Short, and called by HOT threads in tight loops. */
int __attribute__((noinline)) hot(int x)
{
	return (x ^ salt) * 3 + 1;
}

static void *spinner(void *arg)
{
	(void)arg;
	for (int i = 0;; i++) {
		int r = hot(i);

		if (r == (i ^ salt) * 3 + 1)
			atomic_fetch_add_explicit(&old_calls, 1, memory_order_relaxed);
		else if (r == (i ^ salt) * 3 + 2)
			atomic_fetch_add_explicit(&new_calls, 1, memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&bad_calls, 1, memory_order_relaxed);
	}
	return NULL;
}

static void *reader(void *arg)
{
	char c;

	(void)arg;
	for (;;)
		if (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			atomic_fetch_add(&eintr, 1);
	return NULL;
}

static void *futexer(void *arg)
{
	(void)arg;
	for (;;)
		if (syscall(SYS_futex, &futex_word, FUTEX_WAIT, 0, NULL, NULL, 0) < 0 && errno == EINTR)
			atomic_fetch_add(&eintr, 1);
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec ts = {3600, 0};

		if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
			atomic_fetch_add(&eintr, 1);
	}
	return NULL;
}

static void case_report(const char *request)
{
	if (strcmp(request, "reset") == 0) {
		atomic_store(&old_calls, 0);
		atomic_store(&new_calls, 0);
	}
	usleep(20000);
	printf("old=%s new=%s bad=%ld eintr=%ld\n",
	       atomic_load(&old_calls) ? "yes" : "no", atomic_load(&new_calls) ? "yes" : "no",
	       atomic_load(&bad_calls), atomic_load(&eintr));
}

int main(int argc, char **argv)
{
	pthread_t t;
	void *(*blockers[3])(void *) = {reader, futexer, sleeper};
	/* Blocked threads, of the three kinds in turn: one of each for the
	 * test, more for the soak benchmark. */
	int blocked = argc > 1 ? atoi(argv[1]) : 3;

	if (pipe(pipefd) != 0)
		return 1;
	for (int i = 0; i < HOT; i++)
		pthread_create(&t, NULL, spinner, NULL);
	for (int i = 0; i < blocked; i++)
		pthread_create(&t, NULL, blockers[i % 3], NULL);
	return harness_loop();
}
