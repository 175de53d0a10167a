/* The main thread exits with pthread_exit and stays a zombie while the
 * worker runs on: system calls must be injected on another thread. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) int value(void) { return 1; }

static void *worker(void *a) {
	for (;;) {
		printf("value=%d\n", value());
		fflush(stdout);
		usleep(3000);
	}
	return a;
}

int main(void) {
	pthread_t t;
	pthread_create(&t, NULL, worker, NULL);
	printf("ready\n");
	fflush(stdout);
	pthread_exit(NULL);
}
