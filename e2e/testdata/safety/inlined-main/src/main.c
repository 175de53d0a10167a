#include <stdio.h>
#include <unistd.h>

/* The changed function is small and static: at -O2 gcc inlines it into
 * main, whose loop never ends. The patch replaces main, which is always
 * running. */
static volatile int level;

static int work(int x)
{
	return x * 2 + level;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready pid=%d\n", (int)getpid());
	for (int i = 0;; i++) {
		level = work(i) & 1;
		usleep(20000);
	}
}
