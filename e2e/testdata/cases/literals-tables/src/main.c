#include "harness.h"

static const int weights[8] = { 1, 2, 3, 5, 8, 13, 21, 34 };

const char *describe(int code)
{
	switch (code) {
	case 0: return "zero";
	case 1: return "one";
	case 2: return "two";
	case 3: return "three";
	case 4: return "four";
	case 5: return "five";
	case 6: return "six";
	default: return "many";
	}
}

int weigh(int i)
{
	return weights[i & 7];
}

static void case_report(const char *request)
{
	(void)request;
	printf("describe:");
	for (int i = 0; i < 8; i++)
		printf(" %s", describe(i));
	printf("\nweigh: %d %d\n", weigh(3), weigh(7));
}

int main(void)
{
	return harness_loop();
}
