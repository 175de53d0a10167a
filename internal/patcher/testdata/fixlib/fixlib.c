/* A shared library the app fixture loads: patches target its functions,
 * its data and its thread-local variables. */
__thread int lib_tls = 40;
__thread int lib_tls_gd = 40;
int lib_global = 300;

__attribute__((noipa)) int lib_value(int x) { return x * 2; }
/* lib_tls_gd is only ever accessed general-dynamic (the default for
 * -fPIC), so the library keeps a DTPMOD slot for it; lib_tls has an
 * initial-exec access in fixlib_ie.c, so its slot is a TPOFF one. */
__attribute__((noipa)) int lib_tls_value(void) { return lib_tls_gd; }
