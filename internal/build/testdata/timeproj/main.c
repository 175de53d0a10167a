#include <stdio.h>
const char *build_time(void);
int answer(void) { return 42; }
int main(void) { printf("%s: %d\n", build_time(), answer()); return 0; }
