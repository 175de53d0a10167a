/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int caller(int x, int y, int z);
int main(void)
{
	printf("%d %d\n", caller(3, 4, 5), caller(-2, 7, 1));
	return 0;
}
