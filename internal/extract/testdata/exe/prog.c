#include <stdio.h>

static int counter;
__thread int tlsvar;
int shared_value = 5;

static int helper(int x) { return x * 3; }

int compute(int x)
{
	counter++;
	return helper(x) + counter;
}

int main(void)
{
	printf("%d\n", compute(2));
	fputs("done\n", stdout);
	return 0;
}
