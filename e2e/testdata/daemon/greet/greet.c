/* The daemon tests' program: prints message() first thing in main and
 * again for every "go" line on stdin. With "spin" as its argument, a
 * thread runs inside work() until "stop" arrives: a patch replacing
 * work() cannot be applied meanwhile. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile int spinning = 1;

__attribute__((noipa)) const char *message(void) { return "old"; }

__attribute__((noipa)) long work(void)
{
	long n = 0;
	while (spinning)
		n++;
	return n;
}

static void *spinner(void *arg)
{
	(void)arg;
	work();
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	char line[64];
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("first %s\n", message());
	if (argc > 1 && !strcmp(argv[1], "spin"))
		pthread_create(&t, NULL, spinner, NULL);
	while (fgets(line, sizeof line, stdin)) {
		if (!strncmp(line, "stop", 4)) {
			spinning = 0;
			printf("stopped\n");
		} else if (!strncmp(line, "go", 2)) {
			printf("msg %s\n", message());
		}
	}
	return 0;
}
