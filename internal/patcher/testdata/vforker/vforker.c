/* One thread waits in vfork, in uninterruptible sleep (state D), while its
 * child sleeps; the other thread works on. A tracer cannot stop the
 * waiting thread until the child exits or execs. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__attribute__((noipa)) int value(void) { return 1; }

static void *vforker(void *a) {
	pid_t child = vfork();
	if (child == 0) {
		char msg[64];
		int n = snprintf(msg, sizeof msg, "child %d\n", (int)getpid());
		write(1, msg, n);
		pause();
		_exit(0);
	}
	return a;
}

int main(void) {
	pthread_t t;
	pthread_create(&t, NULL, vforker, NULL);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		printf("value=%d\n", value());
		fflush(stdout);
		usleep(3000);
	}
}
