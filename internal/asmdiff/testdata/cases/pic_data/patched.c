/* Data of this file and of other objects, reached directly or through the
 * GOT depending on the code model: patch code must reach the same objects,
 * through slots and placeholders where the GOT or a copy relocation was
 * involved. */
#include <stdio.h>

extern int external_counter;
int defined_here = 5;
static int private_here = 6;
void set_private(int v) { private_here = v; }

int sum(void)
{
	return external_counter * 2 + defined_here + private_here;
}

void show(void)
{
	fprintf(stderr, "%d\n", sum());
}
