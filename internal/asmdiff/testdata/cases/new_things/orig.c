/* New functions (global and static), new variables (global and static,
 * initialised and zero) and new string literals. */
#include <stdio.h>

int existing = 3;

int compute(int x)
{
	return x * existing;
}
