/* Drives the case's functions for TestPatchedProgramBehaves. */
#include <stdio.h>
#include <stdlib.h>
struct buf { char *data; unsigned len, cap; int dirty; long pad[8]; };
int a1(struct buf *b);
int a2(struct buf *b, const char *s);
int a3(struct buf *b, const char *s);
int a4(struct buf *b, const char *s);
int checked(struct buf *b, const int *v, int n);
int grow(struct buf *b, unsigned need)
{
	char *p = realloc(b->data, need);
	if (!p)
		return -1;
	b->data = p;
	b->cap = need;
	return 0;
}
int main(void)
{
	struct buf b = { 0 };
	int v[] = { 1, 2, 3, 4 };
	printf("%d %d %d %d\n", a1(&b), a2(&b, "two\tx"), a3(&b, "three\r"), a4(&b, "four"));
	printf("%d %u\n", checked(&b, v, 4), b.len);
	fflush(stdout);
	v[2] = -1;
	return checked(&b, v, 4);
}
