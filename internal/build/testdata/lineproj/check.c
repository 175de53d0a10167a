#include "check.h"

int scale(int x)
{
	assert(x >= 0);
	return checked_half(x) * 3;
}

int where(void)
{
	return __LINE__;
}

int clamp(int x, int lo, int hi)
{
	if (x < lo) {
		LOG("below");
		return lo;
	}
	if (x > hi) {
		LOG("above");
		return hi;
	}
	return x;
}

int parse_digit(char c)
{
	if (c < '0' || c > '9')
		return -1;
	return c - '0';
}
