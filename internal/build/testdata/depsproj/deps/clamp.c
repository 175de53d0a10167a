#include "clamp.h"

/* Keeps values in range; the bug: the range is far too wide. */
__attribute__((noinline)) int clamp_value(int v)
{
	if (v > 100000)
		return 100000;
	return v;
}
