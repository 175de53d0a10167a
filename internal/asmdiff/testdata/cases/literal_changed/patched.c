/* A changed string literal changes the functions that use it, and only
 * those: literals are matched by content, not by their .LC number. */
#include <stdio.h>

void hello(const char *who)
{
	printf("hello, %s\n", who);
}

void bye(const char *who)
{
	printf("goodbye, %s!\n", who);
}

void both(const char *who)
{
	hello(who);
	printf("and then\n");
	bye(who);
}
