#include "harness.h"

int version(void)
{
	return 1;
}

static void case_report(const char *request)
{
	(void)request;
	printf("version=%d\n", version());
}

int main(void)
{
	return harness_loop();
}
