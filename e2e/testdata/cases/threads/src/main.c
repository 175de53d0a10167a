#include "harness.h"
#include <pthread.h>
#include <stdatomic.h>

#define NTHREADS 4

int __attribute__((noinline)) work(int id)
{
	return id + 1;
}

static atomic_int generation;
static atomic_int seen[NTHREADS];
static atomic_int result[NTHREADS];

static void *worker(void *arg)
{
	int id = (int)(long)arg;
	for (;;) {
		int g = atomic_load(&generation);
		atomic_store(&result[id], work(id));
		atomic_store(&seen[id], g);
		usleep(200);
	}
	return NULL;
}

/* Waits until every thread has called work() since the request came in. */
static void case_report(const char *request)
{
	(void)request;
	int g = atomic_fetch_add(&generation, 1) + 1;
	for (int i = 0; i < NTHREADS; i++)
		while (atomic_load(&seen[i]) < g)
			usleep(100);
	printf("results:");
	for (int i = 0; i < NTHREADS; i++)
		printf(" %d", atomic_load(&result[i]));
	printf("\n");
}

int main(void)
{
	pthread_t t;
	for (long i = 0; i < NTHREADS; i++)
		pthread_create(&t, NULL, worker, (void *)i);
	return harness_loop();
}
