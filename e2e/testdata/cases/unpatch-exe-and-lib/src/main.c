#include "harness.h"

void greet_lib(const char *who);

void greet_main(void)
{
	printf("main says hi\n");
}

static void case_report(const char *request)
{
	(void)request;
	greet_main();
	greet_lib("world");
}

int main(void)
{
	return harness_loop();
}
