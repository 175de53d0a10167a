/* Pointing an existing table entry at a new function would change live
 * state: refused. */
static int op_add(int a, int b) { return a + b; }
int (*handler)(int, int) = op_add;
int call(int a, int b) { return handler(a, b); }
