/* A shared library exercising what the patcher resolves: versioned
 * symbols (a default and a non-default version of one name), an ifunc,
 * thread-local variables reached through the general-dynamic and
 * initial-exec models, a local TLS variable, and imports from libc. */
#include <stdio.h>
#include <string.h>

__thread long lib_gd_var = 7;
__thread long lib_ie_var __attribute__((tls_model("initial-exec"))) = 11;
static __thread long lib_local_tls;

int lib_foo_v1(void) { return 1; }
int lib_foo_v2(void) { return 2; }
__asm__(".symver lib_foo_v1, lib_foo@LIBT_1");
__asm__(".symver lib_foo_v2, lib_foo@@LIBT_2");

static int lib_ifn_impl(void) { return 42; }
static int (*lib_ifn_resolver(void))(void) { return lib_ifn_impl; }
int lib_ifn(void) __attribute__((ifunc("lib_ifn_resolver")));

__attribute__((visibility("hidden"))) int lib_hidden(int x) { return x * 3; }
__attribute__((visibility("protected"))) int lib_protected(int x) { return x + 5; }

int lib_use(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	lib_local_tls++;
	return (int)strlen(src) + (int)lib_gd_var + (int)lib_ie_var + lib_ifn() + lib_hidden((int)lib_local_tls);
}

/* Report, for the test, where things really are in this process. */
void lib_report(void)
{
	printf("lib_gd_var=%p lib_ie_var=%p tp=%p lib_use=%p\n", (void *)&lib_gd_var,
	       (void *)&lib_ie_var, __builtin_thread_pointer(), (void *)lib_use);
}
