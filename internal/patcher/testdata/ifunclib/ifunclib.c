/* A library ifunc that nothing in the process calls: no object holds a
 * resolved GOT slot for it, so a patch that calls it needs its resolver
 * called in the process. */
static int lib_pick_fast(int x) { return x * 1000; }
static void *resolve_lib_pick(void) { return (void *)lib_pick_fast; }
int lib_pick(int x) __attribute__((ifunc("resolve_lib_pick")));
int lib_unused(void) { return 0; }
