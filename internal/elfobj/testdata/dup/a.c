/* Two translation units with a static function and a static variable of
 * the same name: a lookup by name alone is ambiguous. */
static int helper(int x) { return x + 1; }
static int state = 1;
int b_entry(int x);
int main(int argc, char **argv) { (void)argv; return helper(argc) + b_entry(argc) + state; }
