#include "harness.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static atomic_int version;
static atomic_long ticks;

/* The thread is inside tick() nearly all the time: it sleeps in it. */
void __attribute__((noinline)) tick(void)
{
	struct timespec ts = {1, 0};

	atomic_store(&version, 1);
	atomic_fetch_add(&ticks, 1);
	while (nanosleep(&ts, &ts) != 0)
		if (errno == EINTR)
			printf("EINTR in nanosleep\n");
}

static void *ticker(void *arg)
{
	(void)arg;
	for (;;)
		tick();
	return NULL;
}

static void case_report(const char *request)
{
	(void)request;
	long t = atomic_load(&ticks);

	/* One full tick after the request, so the answer reflects the code
	 * that runs now. */
	while (atomic_load(&ticks) < t + 2)
		usleep(1000);
	printf("version=%d\n", atomic_load(&version));
}

int main(void)
{
	pthread_t t;

	pthread_create(&t, NULL, ticker, NULL);
	return harness_loop();
}
