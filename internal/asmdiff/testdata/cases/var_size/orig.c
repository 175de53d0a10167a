/* Growing an existing array is refused. */
int table[4];
int get(int i) { return table[i]; }
