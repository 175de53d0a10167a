#include "shared.h"

int from_b(int x)
{
	return shared_step(x) * 100;
}
