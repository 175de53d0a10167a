#include "harness.h"

int util_base(void);

__attribute__((noipa)) int compute(int x)
{
	return x + util_base();
}

static void case_report(const char *request)
{
	(void)request;
	printf("compute=%d\n", compute(1));
}

int main(void)
{
	return harness_loop();
}
