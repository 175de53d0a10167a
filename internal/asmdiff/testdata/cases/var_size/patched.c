/* Growing an existing array is refused. */
int table[8];
int get(int i) { return table[i]; }
