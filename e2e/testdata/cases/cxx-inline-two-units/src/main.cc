#include "harness.h"
#include "shared.h"

static void case_report(const char *request)
{
	(void)request;
	printf("a=%d b=%d\n", from_a(1), from_b(1));
}

int main()
{
	return harness_loop();
}
