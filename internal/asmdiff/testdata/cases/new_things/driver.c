/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int compute(int x);
int main(void)
{
	for (int i = 0; i < 4; i++)
		printf("%d\n", compute(i));
	return 0;
}
