/* Functions whose code depends on their line (__LINE__, assert) change
 * when lines are added above them; the others do not. */
#include <assert.h>
#include <stdio.h>

/* These lines
 * move everything below. */

int where(void)
{
	return __LINE__;
}

int checked(int x)
{
	assert(x > 0);
	return x * 2;
}

int plain(int x)
{
	return x + 40;
}

void say(const char *s)
{
	printf("%s at %d\n", s, __LINE__);
}
