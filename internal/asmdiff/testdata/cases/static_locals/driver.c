/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
int tick(void);
int tock(void);
int both(void);
int main(void)
{
	for (int i = 0; i < 4; i++)
		printf("%d %d %d\n", tick(), tock(), both());
	return 0;
}
