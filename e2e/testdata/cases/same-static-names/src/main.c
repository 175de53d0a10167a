#include "harness.h"

void show_a(void);
void show_b(void);

static void case_report(const char *request)
{
	(void)request;
	show_a();
	show_b();
}

int main(void)
{
	return harness_loop();
}
