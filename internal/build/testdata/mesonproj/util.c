#include <string.h>
#include "calc.h"
#include "util.h"

int clamp(int v, int lo, int hi)
{
	if (v < lo)
		return lo;
	if (v > hi)
		return hi;
	return v;
}

long calc_checksum(const char *s)
{
	long sum = 0;
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		sum = sum * 31 + (unsigned char)s[i];
	return sum;
}
