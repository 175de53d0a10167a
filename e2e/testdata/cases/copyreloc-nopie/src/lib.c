#include <stdio.h>

void lib_report(void)
{
	printf("lib says hi\n");
}
