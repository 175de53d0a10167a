#include <string.h>
#include <stdio.h>
__thread int ext_tls;
int lib_fn(char *d, const char *s, int n) { memcpy(d, s, n); fputs("x", stdout); return n; }
