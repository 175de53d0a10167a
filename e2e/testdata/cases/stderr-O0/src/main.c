#include "harness.h"
#include <unistd.h>

/* Neither stderr nor opterr is used here: the executable has no copy of
 * them, so the patch must reach glibc's own, far from the patch region. */
void report(void)
{
	printf("report on stdout\n");
}

static void case_report(const char *request)
{
	(void)request;
	report();
}

int main(void)
{
	return harness_loop();
}
