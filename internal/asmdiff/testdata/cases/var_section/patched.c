/* Moving a variable to another section is refused. */
int mode __attribute__((section(".data.tuned"))) = 3;
int get(void) { return mode; }
