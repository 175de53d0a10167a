#include <stdio.h>

static const char * __attribute__((noinline)) name(void)
{
	return "beta";
}

void show_b(void)
{
	printf("b=%s\n", name());
}
