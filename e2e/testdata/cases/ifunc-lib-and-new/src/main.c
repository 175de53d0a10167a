#include "harness.h"

int lib_scale(int x);
int lib_version(void);

__attribute__((noipa)) int compute(int x)
{
	return x + lib_version();
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
