/* Adding lines above functions shifts every later .loc line number; the
 * code is the same, so nothing is changed.
 *
 * This comment is longer now,
 * and pushes everything down by a few lines.
 */
#include <stdio.h>


int total;

/* A square. */
static int square(int x)
{
	return x * x;
}

/* Sum of squares,
 * kept in total. */
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
