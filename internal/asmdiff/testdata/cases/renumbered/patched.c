/* An edit to the first function adds literals, branches and a switch, so
 * gcc renumbers every later local label (.L, .LC, .LFB, jump tables). Only
 * the edited function is changed. */
#include <stdio.h>

int classify(int x)
{
	if (x < 0) {
		printf("negative: %d\n", x);
		return -1;
	}
	switch (x) {
	case 10: puts("ten"); return 10;
	case 11: puts("eleven"); return 11;
	case 12: puts("twelve"); return 12;
	case 13: puts("thirteen"); return 13;
	case 14: puts("fourteen"); return 14;
	}
	if (x == 7)
		printf("%f\n", x * 1.5);
	return x > 100;
}

const char *name(int x)
{
	switch (x) {
	case 0: return "zero";
	case 1: return "one";
	case 2: return "two";
	case 3: return "three";
	case 4: return "four";
	case 5: return "five";
	default: return "many";
	}
}

int loop(int n)
{
	int s = 0;
	for (int i = 0; i < n; i++) {
		if (i % 3 == 0)
			s += i;
		else if (i % 5 == 0)
			s -= i;
	}
	printf("loop %d: %d\n", n, s);
	return s;
}

double scaled(double v)
{
	return v * 3.25 + 0.5;
}
