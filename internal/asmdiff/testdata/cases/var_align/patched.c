/* Changing the alignment of an existing variable is refused. */
long counter __attribute__((aligned(64))) = 1;
long get(void) { return counter++; }
