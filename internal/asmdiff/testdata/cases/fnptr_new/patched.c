/* Pointing an existing table entry at a new function would change live
 * state: refused. */
static int op_add(int a, int b) { return a + b; }
static int op_add_checked(int a, int b) { return a > 1000 ? 0 : a + b; }
int (*handler)(int, int) = op_add_checked;
int call(int a, int b) { return handler(a, b) + op_add(a, b); }
