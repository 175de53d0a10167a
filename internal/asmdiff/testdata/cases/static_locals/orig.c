/* Function-local statics are numbered by gcc (count.0, count.1...). A new
 * function with its own static renumbers the others; patch code must keep
 * using the original variables. */
#include <stdio.h>

int tick(void)
{
	static int count;
	return ++count;
}

int tock(void)
{
	static int count = 100;
	count += 2;
	return count;
}

static int file_static = 7;

int both(void)
{
	return tick() + tock() + file_static;
}
