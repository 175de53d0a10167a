/* An executable exercising what the patcher resolves: its own static and
 * global functions, thread-local variables (initial-exec and local-exec),
 * an ifunc of its own, libc's ifuncs (memcpy, strlen), and libc data
 * copied into the executable (stdout). It reports where things are and
 * waits on stdin, so that a test can look at it while it runs. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__thread int prog_tls_le = 3;
extern __thread int prog_tls_ie __attribute__((tls_model("initial-exec")));
__thread int prog_tls_ie = 4;
static int counter = 1;

static int prog_ifn_impl(int x) { return x + 1; }
static int (*prog_ifn_resolver(void))(int) { return prog_ifn_impl; }
int prog_ifn(int x) __attribute__((ifunc("prog_ifn_resolver")));

static __attribute__((noinline)) int prog_static(int x) { return x * counter++; }

__attribute__((noinline)) int prog_global(const char *s)
{
	char buf[64];
	size_t n = strlen(s);
	if (n >= sizeof buf)
		n = sizeof buf - 1;
	memcpy(buf, s, n);
	buf[n] = 0;
	return prog_static((int)n) + prog_ifn(prog_tls_le + prog_tls_ie);
}

int main(int argc, char **argv)
{
	void *(*volatile mc)(void *, const void *, size_t) = memcpy;
	fprintf(stdout, "prog_global=%p main=%p memcpy=%p stdout=%p tls_le=%p tls_ie=%p tp=%p r=%d\n",
		(void *)prog_global, (void *)main, (void *)mc, (void *)&stdout,
		(void *)&prog_tls_le, (void *)&prog_tls_ie, __builtin_thread_pointer(),
		prog_global(argc > 1 ? argv[1] : "x"));
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
