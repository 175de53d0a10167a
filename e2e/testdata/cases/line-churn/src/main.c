#include <assert.h>
#include "harness.h"

#define LOG(msg) printf("%s at line %d\n", (msg), __LINE__)

__attribute__((noinline)) int halve(int x)
{
	assert(x % 2 == 0);
	return x / 2;
}

__attribute__((noinline)) int where(void)
{
	return __LINE__;
}

__attribute__((noinline)) int digit(char c)
{
	if (c < '0' || c > '9')
		return -1;
	return c - '0';
}

__attribute__((noinline)) void note(void)
{
	LOG("note");
}

static void case_report(const char *request)
{
	(void)request;
	note();
	printf("halve=%d where=%d digit=%d\n", halve(8), where(), digit('x'));
}

int main(void)
{
	return harness_loop();
}
