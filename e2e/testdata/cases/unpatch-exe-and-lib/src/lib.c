#include <stdio.h>

int greet_calls;

const char *greet_word(void)
{
	return "hello";
}

void greet_lib(const char *who)
{
	greet_calls++;
	printf("%s from the library, %s (%d)\n", greet_word(), who, greet_calls);
}
