/* Adding lines above functions shifts every later .loc line number; the
 * code is the same, so nothing is changed. */
#include <stdio.h>

int total;

static int square(int x)
{
	return x * x;
}

int accumulate(const int *v, int n)
{
	for (int i = 0; i < n; i++)
		total += square(v[i]);
	return total;
}

void show(void)
{
	printf("total %d\n", total);
}
