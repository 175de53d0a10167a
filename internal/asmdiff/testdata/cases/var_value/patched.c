/* Changing the initial value of an existing variable is refused. */
int limit = 20;
int get(void) { return limit; }
