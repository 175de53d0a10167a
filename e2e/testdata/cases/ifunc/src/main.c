#include "harness.h"
#include <stdlib.h>

static int compute_plain(int x) { return x + 1; }
static int compute_fast(int x) { return x + 1; }

/* The resolver picks an implementation when the program starts, as glibc
 * does for memcpy and strlen. */
static void *resolve_compute(void)
{
	return getenv("HOTPATCH_E2E_PLAIN") ? (void *)compute_plain : (void *)compute_fast;
}

int compute(int x) __attribute__((ifunc("resolve_compute")));

int use(const char *word)
{
	return compute((int)strlen(word));
}

static void case_report(const char *request)
{
	(void)request;
	printf("use=%d\n", use("patching"));
}

int main(void)
{
	return harness_loop();
}
