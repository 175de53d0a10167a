/* A timer signal arrives every 200 µs while a thread sleeps and another
 * computes: the patcher stops the process between signals and must not
 * lose any, nor turn one into a crash. The handler counts; the main
 * thread prints the count with value(). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_alarm(int sig) { (void)sig; handled++; }

__attribute__((noipa)) int value(void) { return 1; }

static void *sleeper(void *a) {
	for (;;)
		pause();
	return a;
}

int main(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	pthread_t t;
	pthread_create(&t, NULL, sleeper, NULL);
	struct itimerval it = {{0, 200}, {0, 200}};
	setitimer(ITIMER_REAL, &it, NULL);
	printf("ready\n");
	fflush(stdout);
	for (int i = 0;; i++) {
		usleep(5000);
		printf("value=%d handled=%d\n", value(), (int)handled);
		fflush(stdout);
	}
}
