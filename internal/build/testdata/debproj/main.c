#include <stdio.h>
#include <unistd.h>
#include "calc.h"
#include "report.h"

int iterations = 3;

int main(int argc, char **argv)
{
	(void)argv;
	for (int i = 0; i < iterations + argc - 1; i++)
		report("sum", calc_add(i, calc_scale(i)));
	printf("checksum %ld, %d reports, %d calls\n", calc_checksum("hotpatch"), report_count(), calc_calls);
	return 0;
}
