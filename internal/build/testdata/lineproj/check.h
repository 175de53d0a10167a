#ifndef CHECK_H
#define CHECK_H
#include <assert.h>
#include <stdio.h>

#define LOG(msg) fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, (msg))

static inline int checked_half(int x)
{
	assert(x % 2 == 0);
	return x / 2;
}

int scale(int x);
int where(void);
int clamp(int x, int lo, int hi);
int parse_digit(char c);
#endif
