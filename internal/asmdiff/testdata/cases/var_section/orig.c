/* Moving a variable to another section is refused. */
int mode = 3;
int get(void) { return mode; }
