/* A service with two functions that patches replace, alpha and beta. A
 * worker thread calls them all the time; each line on stdin makes the main
 * thread print what they return now, so a test can compare the behaviour
 * with what hotpatch info says is applied. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) int alpha(void) { return 1; }
__attribute__((noipa)) int beta(void) { return 2; }

static volatile long sink;

static void *work(void *arg) {
	for (;;) {
		sink += alpha() + beta();
		usleep(500);
	}
	return arg;
}

int main(void) {
	pthread_t th;
	pthread_create(&th, NULL, work, NULL);
	printf("ready\n");
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		printf("alpha=%d beta=%d\n", alpha(), beta());
		fflush(stdout);
	}
	return 0;
}
