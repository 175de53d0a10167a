/* Changing the alignment of an existing variable is refused. */
long counter = 1;
long get(void) { return counter++; }
