/* A shared library the app fixture loads: patches target its functions,
 * its data and its thread-local variables. */
__thread int lib_tls = 40;
int lib_global = 300;

__attribute__((noinline)) int lib_value(int x) { return x * 2; }
__attribute__((noinline)) int lib_tls_value(void) { return lib_tls; }
/* Keeps an initial-exec and a general-dynamic access to lib_tls in the
 * library itself, as real libraries have. */
__attribute__((noinline, tls_model("initial-exec"))) int *lib_tls_ie(void) {
	extern __thread int lib_tls __attribute__((tls_model("initial-exec")));
	return &lib_tls;
}
