/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int first(int op, int a, int b);
int second(int op, int a);
int main(void)
{
	for (int op = -1; op < 11; op++)
		printf("first(%d) = %d\n", op, first(op, 12, 3));
	for (int op = 9; op < 18; op++)
		printf("second(%d) = %d\n", op, second(op, 100));
	return 0;
}
