#include "harness.h"

void greet(const char *who)
{
	printf("hello, %s\n", who);
}

static void case_report(const char *request)
{
	(void)request;
	greet("world");
}

int main(void)
{
	return harness_loop();
}
