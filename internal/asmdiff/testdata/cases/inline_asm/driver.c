/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int spin(int n);
int other(int x);
int main(void)
{
	printf("%d %d\n", spin(10), other(5));
	return 0;
}
