#include "harness.h"

int count(int step)
{
	return step > 0 ? step : -step;
}

static void case_report(const char *request)
{
	(void)request;
	int a = count(1);
	int b = count(2);
	printf("count=%d,%d\n", a, b);
}

int main(void)
{
	return harness_loop();
}
