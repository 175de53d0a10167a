#include "shared.h"

int from_a(int x)
{
	return shared_step(x) * 10;
}
