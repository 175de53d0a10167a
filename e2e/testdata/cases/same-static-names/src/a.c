#include <stdio.h>

static const char * __attribute__((noinline)) name(void)
{
	return "alpha";
}

void show_a(void)
{
	printf("a=%s\n", name());
}
