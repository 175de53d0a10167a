#include <stdio.h>
#include "report.h"

static int reports;

void report(const char *what, int value)
{
	reports++;
	printf("%s = %d\n", what, value);
}

int report_count(void)
{
	return reports;
}
