#include "harness.h"

static int counter;

int bump(void)
{
	counter += 1;
	return counter;
}

int tick(void)
{
	static int ticks;
	ticks += 1;
	return ticks;
}

static void case_report(const char *request)
{
	(void)request;
	int b = bump();
	int t = tick();
	printf("bump=%d tick=%d\n", b, t);
}

int main(void)
{
	return harness_loop();
}
