#include "harness.h"
#include <pthread.h>
#include <stdatomic.h>

static atomic_int hold;
static atomic_int inside;
static atomic_long calls;
static atomic_int step;

/* While hold is set, a thread stays inside busy(): patching busy() must
 * wait for it, or give up cleanly. */
void __attribute__((noinline)) busy(void)
{
	atomic_store(&step, 1);
	atomic_fetch_add(&calls, 1);
	atomic_store(&inside, 1);
	while (atomic_load(&hold))
		__asm__ volatile("pause");
	atomic_store(&inside, 0);
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		busy();
		usleep(500);
	}
	return NULL;
}

static void case_report(const char *request)
{
	if (strcmp(request, "hold") == 0) {
		atomic_store(&hold, 1);
		while (!atomic_load(&inside))
			usleep(100);
		printf("holding\n");
	} else if (strcmp(request, "release") == 0) {
		atomic_store(&hold, 0);
		printf("released\n");
	} else if (strcmp(request, "alive") == 0) {
		printf("alive\n");
	} else {
		long c = atomic_load(&calls);
		while (atomic_load(&calls) == c)
			usleep(100);
		printf("rounds-step=%d\n", atomic_load(&step));
	}
}

int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, worker, NULL);
	return harness_loop();
}
