#include <stdio.h>
#include <unistd.h>
#include "deps/clamp.h"

static int counter;

__attribute__((noinline)) static int step(void)
{
	return ++counter;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		printf("value %d\n", clamp_value(scale_value(step())));
		usleep(10000);
	}
}
