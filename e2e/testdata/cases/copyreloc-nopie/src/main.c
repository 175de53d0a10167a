#include "harness.h"
#include <unistd.h>

void lib_report(void);

/* The non-PIE executable writes opterr, so it holds a copy of it (a copy
 * relocation) that glibc itself uses from then on; glibc's own definition
 * keeps the stale initial value. */
void exe_report(void)
{
	printf("exe opterr=%d\n", opterr);
}

static void case_report(const char *request)
{
	(void)request;
	exe_report();
	lib_report();
}

int main(void)
{
	opterr = 42;
	return harness_loop();
}
