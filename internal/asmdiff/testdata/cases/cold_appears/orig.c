/* A fix adds an error path, and with it a .cold part the original did not
 * have: the new cold part goes with the new function, under the
 * original's name. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((cold, noinline)) void complain(const char *what)
{
	fprintf(stderr, "complaint: %s\n", what);
}

int sum(const int *v, int n)
{
	int s = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	return s;
}
