static int helper(int x) { return x * 2; }
static int state = 2;
int b_entry(int x) { return helper(x) + state++; }
