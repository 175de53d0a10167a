/* A change in the hot part of a function that has a .cold part: the cold
 * part jumps back into the hot one by local labels, so both are replaced
 * together, and the function table marks the cold part as range only. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((cold, noinline)) void complain(const char *what)
{
	fprintf(stderr, "complaint: %s\n", what);
}

int sum(const int *v, int n)
{
	int s = 0;
	for (int i = 0; i < n; i++) {
		if (__builtin_expect(v[i] < 0, 0)) {
			complain("negative");
			fprintf(stderr, "at %d\n", i);
			exit(1);
		}
		s += v[i];
	}
	return s;
}
