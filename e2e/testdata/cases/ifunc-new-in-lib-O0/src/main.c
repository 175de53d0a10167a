#include "harness.h"

int lib_count(int x);

static void case_report(const char *request)
{
	(void)request;
	printf("count=%d\n", lib_count(1));
}

int main(void)
{
	return harness_loop();
}
