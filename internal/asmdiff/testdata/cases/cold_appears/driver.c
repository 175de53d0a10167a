/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int sum(const int *v, int n);
int main(void)
{
	int v[] = { 5, 6, 7 };
	printf("%d\n", sum(v, 3));
	fflush(stdout);
	v[1] = -6;
	printf("%d\n", sum(v, 3));
	return 0;
}
