#ifndef SHARED_H
#define SHARED_H

/* An inline function used by two files: each object carries a COMDAT copy,
 * the link keeps one. */
__attribute__((noinline)) inline int shared_step(int x)
{
	return x + 1;
}

int from_a(int x);
int from_b(int x);

#endif
