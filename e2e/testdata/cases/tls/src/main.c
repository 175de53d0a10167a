#include "harness.h"

__thread int depth = 5;
extern __thread int shared_depth;
int lib_tls_step(void);

int measure(void)
{
	depth += 1;
	shared_depth += 1;
	return depth * 100 + shared_depth;
}

static void case_report(const char *request)
{
	(void)request;
	printf("measure=%d lib=%d\n", measure(), lib_tls_step());
}

int main(void)
{
	return harness_loop();
}
