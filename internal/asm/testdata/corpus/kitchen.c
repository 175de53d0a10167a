#include <stdio.h>
#include <stdlib.h>
#include <assert.h>
static int counter;
int gv = 5;
const int table[4] = {1,2,3,4};
__thread int tv;
extern __thread int etv;
static int helper(int x) { static int calls; calls++; return x * 3 + calls; }
int sw(int x) {
  switch (x) { case 0: return puts("zero"); case 1: return puts("one"); case 2: return 7; case 3: return helper(x); case 4: return 99; case 5: return x*x; default: return -1; }
}
int cs(int x) { switch(x) { case 0: return 5; case 1: return 9; case 2: return 13; case 3: return 2; default: return 0; } }
__attribute__((noinline)) int coldy(int x) { if (__builtin_expect(x > 100, 0)) { fprintf(stderr, "big %d\n", x); abort(); } return x + 1; }
int usetls(void) { return tv + etv; }
int main(int argc, char **argv) { assert(argc > 0); counter += helper(argc); printf("%d %d %s\n", counter, gv, argv[0]); return sw(argc) + cs(argc) + coldy(argc) + table[argc&3]; }
