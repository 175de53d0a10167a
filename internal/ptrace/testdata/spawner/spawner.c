/* Keeps creating short-lived threads, from several threads at once, so
 * that threads appear while a tracer is stopping the process. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile unsigned long spawned;

static void *leaf(void *a) { return a; }

static void *spawner(void *a) {
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, leaf, NULL) == 0) {
			pthread_join(t, NULL);
			__atomic_add_fetch(&spawned, 1, __ATOMIC_RELAXED);
		}
	}
	return a;
}

int main(void) {
	pthread_t t;
	for (int i = 0; i < 3; i++)
		pthread_create(&t, NULL, spawner, NULL);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		sleep(1);
		printf("spawned %lu\n", spawned);
		fflush(stdout);
	}
}
