/* The patch target for ifuncs without a resolved slot: exe_pick is an
 * ifunc of the program that the program never calls, and the library's
 * lib_pick is called by nobody. */
#include <stdio.h>
#include <unistd.h>

int lib_unused(void);

static int exe_pick_fast(int x) { return x + 500; }
static void *resolve_exe_pick(void) { return (void *)exe_pick_fast; }
int exe_pick(int x) __attribute__((ifunc("resolve_exe_pick"), used));

__attribute__((noipa)) int value(int x) { return x; }

int main(void)
{
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		printf("t0 value=%d unused=%d\n", value(1), lib_unused());
		fflush(stdout);
		usleep(2000);
	}
}
