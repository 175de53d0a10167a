#include "harness.h"

/* Prints the entries of a NULL-terminated list, every step-th one. */
__attribute__((noinline)) static void reply_help(const char **help, int step)
{
	int n = 0;
	for (int k = 0; help[k]; k += step)
		n += printf("%s%s", n ? " " : "", help[k]);
	printf("\n");
}

/* gcc puts the initialiser of this array, unnamed (.LCn), in .data and
 * copies it onto the stack with rep movsq. */
__attribute__((noinline)) void show_help(int step)
{
	const char *help[] = {
		"alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
		"golf", "hotel", "india", "juliet", "kilo", "lima",
		"mike", "november", "oscar", "papa", "quebec", "romeo",
		"sierra", "tango", "uniform", "victor", "whiskey", "xray",
		"yankee", "zulu", "one", "two", "three", "four",
		"five", "six", "seven", "eight", "nine", "ten",
		0,
	};
	reply_help(help, step);
}

static void case_report(const char *request)
{
	(void)request;
	show_help(12);
}

int main(void)
{
	return harness_loop();
}
