/* The daemon benchmark's target: prints one line computed by work() as
 * soon as main runs; with an argument it exits there (the start-up
 * probe), without one it waits forever (the fleet). */
#include <stdio.h>
#include <unistd.h>

static volatile int calls;

__attribute__((noipa)) int work(int x)
{
	calls++;
	return x + 1;
}

int main(int argc, char **argv)
{
	(void)argv;
	printf("ready %d\n", work(1));
	fflush(stdout);
	if (argc > 1)
		return 0;
	for (;;)
		pause();
}
