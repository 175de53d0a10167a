#include <string.h>

static int calls;
__attribute__((visibility("hidden"))) int lib_hidden(int x) { return x + 1; }
int lib_exported(int x) { return x * 2; }
int lib_entry(int x) { calls++; return lib_hidden(x) + lib_exported(x) + calls; }
