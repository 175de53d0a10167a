/* An initial-exec access to lib_tls in its own translation unit (the model
 * is per declaration): a TPOFF slot, as real libraries using static TLS
 * have. */
extern __thread int lib_tls __attribute__((tls_model("initial-exec")));
int *lib_tls_ie(void) { return &lib_tls; }
