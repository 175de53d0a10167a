/* Definitions the golden cases declare but do not define, so that they
 * link into programs and libraries (TestLink). */
#include <string.h>

int external_counter = 11;
__thread int shared_tls = 4;

struct buf { char *data; unsigned len, cap; int dirty; long pad[8]; };

int grow(struct buf *b, unsigned need)
{
	return need > 1024 ? -1 : (int)(b->cap = need);
}

__attribute__((weak)) int main(void)
{
	return 0;
}

void reply_help(const char **help, int n)
{
	(void)help;
	(void)n;
}
