/* Every thread blocks SIGURG (argv[1] "urg") or every signal that can be
 * blocked (argv[1] "all"), as programs that leave signals to one thread do,
 * then two threads print what value() returns, every few milliseconds. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__attribute__((noipa)) int value(void) { return 1; }

static void *work(void *arg) {
	for (;;) {
		printf("value=%d\n", value());
		fflush(stdout);
		usleep(5000);
	}
	return arg;
}

int main(int argc, char **argv) {
	sigset_t set;
	sigemptyset(&set);
	if (argc > 1 && strcmp(argv[1], "all") == 0)
		sigfillset(&set);
	else
		sigaddset(&set, SIGURG);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_t th;
	pthread_create(&th, NULL, work, NULL);
	printf("ready\n");
	fflush(stdout);
	work(NULL);
	return 0;
}
