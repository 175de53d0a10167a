/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int apply(int i, int a, int b);
int main(void)
{
	for (int i = 0; i < 3; i++)
		printf("%d\n", apply(i, 7, 3));
	return 0;
}
