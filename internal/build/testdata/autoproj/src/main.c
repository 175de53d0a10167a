#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include "greet.h"

int main(int argc, char **argv)
{
	char *g = greeting(argc > 1 ? argv[1] : "world");
	puts(g);
	free(g);
	printf("%d greeting(s)\n", greet_count());
	return 0;
}
