#include "check.h"

int main(int argc, char **argv)
{
	(void)argv;
	printf("%d %d %d %d\n", scale(4 * argc), where(), clamp(argc, 2, 5), parse_digit('7' + argc));
	return 0;
}
