/* A writable table of function pointers is live state that points at
 * functions: when a function changes, the table still points at its old
 * entry, which the patch redirects, so the table itself is unchanged. */
#include <stdio.h>

static int op_add(int a, int b) { return a + b; }
static int op_sub(int a, int b) { return b - a; }
int op_mul(int a, int b) { return a * b; }

struct op { const char *name; int (*fn)(int, int); };

struct op ops[] = {
	{ "add", op_add },
	{ "sub", op_sub },
	{ "mul", op_mul },
};

int apply(int i, int a, int b)
{
	return ops[i].fn(a, b);
}
