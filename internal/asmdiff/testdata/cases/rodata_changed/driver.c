/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int weigh(int i);
int weigh_twice(int i);
const char *colour(int i);
int lookup(int x);
int untouched(int x);
int main(void)
{
	for (int i = 0; i < 8; i++)
		printf("%d %d %s %d %d\n", weigh(i), weigh_twice(i), colour(i), lookup(i), untouched(i));
	return 0;
}
