/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
void show(int verbose);
int other(int x);
void reply_help(const char **help, int n)
{
	int k = 0;
	for (; help[k]; k++)
		if (n || k % 9 == 0)
			printf("%s ", help[k]);
	printf("(%d)\n", k);
}
int main(void)
{
	show(0);
	show(1);
	show(2);
	printf("%d\n", other(6));
	return 0;
}
