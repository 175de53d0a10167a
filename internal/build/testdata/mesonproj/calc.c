#include "calc.h"
#include "util.h"

int calc_calls;
static int scale_factor = 3;

int calc_add(int a, int b)
{
	calc_calls++;
	return clamp(a + b, -1000, 1000);
}

int calc_scale(int a)
{
	calc_calls++;
	return a * scale_factor;
}
