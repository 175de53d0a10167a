/* main never returns and has work() inlined into it; serve() returns. */
#include <unistd.h>

static volatile int level;

static int work(int x)
{
	return x * 2 + level;
}

int __attribute__((noinline)) serve(int x)
{
	return work(x) + 1;
}

int main(void)
{
	for (int i = 0;; i++) {
		level = work(i) & 1;
		usleep(serve(i) & 1);
	}
}
