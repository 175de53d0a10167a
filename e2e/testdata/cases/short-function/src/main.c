#include "harness.h"

/* Built with -Os, which packs functions without alignment padding: bump
 * is 4 bytes (lea 1(%rdi),%eax; ret) and bump_next follows it at once, so
 * a 5-byte jump does not fit. The padding before the 64-byte aligned
 * function after them is within reach of a 2-byte short jump. */
__attribute__((noipa)) int bump(int x)
{
	return x + 1;
}

__attribute__((noipa)) int bump_next(int x)
{
	return x + 2;
}

__attribute__((noipa, aligned(64))) int scaled(int x)
{
	return x * 5;
}

static void case_report(const char *request)
{
	(void)request;
	printf("bump=%d next=%d scaled=%d\n", bump(1), bump_next(1), scaled(1));
}

int main(void)
{
	return harness_loop();
}
