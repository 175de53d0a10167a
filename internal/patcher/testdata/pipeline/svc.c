/* A service built with make, patched with a patch that "hotpatch build"
 * makes from fix.diff. */
#include <stdio.h>
#include <unistd.h>

static int calls;

__attribute__((noipa)) static int answer(int x)
{
	calls++;
	return x + 40;
}

int main(void)
{
	for (;;) {
		printf("answer=%d\n", answer(1));
		fflush(stdout);
		usleep(3000);
	}
}
