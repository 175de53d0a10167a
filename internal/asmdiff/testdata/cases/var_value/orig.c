/* Changing the initial value of an existing variable is refused. */
int limit = 10;
int get(void) { return limit; }
