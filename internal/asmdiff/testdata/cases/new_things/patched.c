/* New functions (global and static), new variables (global and static,
 * initialised and zero) and new string literals. */
#include <stdio.h>

int existing = 3;
int added_global = 42;
int added_bss;
static int added_static = 9;
static long added_static_bss[16];
const char *added_msg = "a brand new message";

static __attribute__((noinline)) int helper(int x)
{
	added_static_bss[x & 15]++;
	return x + added_static + added_bss++;
}

int added_function(int x)
{
	printf("%s %d\n", added_msg, x);
	return helper(x) + added_global;
}

int compute(int x)
{
	return x * existing + added_function(x);
}
