/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
typedef long v2di __attribute__((vector_size(16)));
v2di vec(v2di x);
float tiny(float x);
double smallest(double x);
int main(void)
{
	v2di v = vec((v2di){ 1, 2 });
	printf("%ld %ld %a %a\n", v[0], v[1], (double)tiny(3.0f), smallest(1.0));
	return 0;
}
