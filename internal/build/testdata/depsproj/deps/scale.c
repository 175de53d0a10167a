#include "clamp.h"

__attribute__((noinline)) int scale_value(int v)
{
	return v * 1;
}
