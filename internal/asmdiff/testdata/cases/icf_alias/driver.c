/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int use_a(const int *p);
int use_b(const int *p);
int main(void)
{
	int v[] = { 3, 9, 27, 81 };
	printf("%d %d\n", use_a(v), use_b(v));
	return 0;
}
