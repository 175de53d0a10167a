#include "harness.h"

static int counter;
int next_id(void);

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
	int id = next_id();
	printf("bump=%d tick=%d id=%d\n", b, t, id);
}

int main(void)
{
	return harness_loop();
}
