/* gcc clones: .part (partial inlining), .isra (scalar replacement of
 * aggregates), .constprop (a constant argument propagated) and .cold (the
 * unlikely part of a function). A change inside a clone or a cold part is
 * a change of the source function it comes from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf { char *data; unsigned len, cap; int dirty; long pad[8]; };
int grow(struct buf *b, unsigned need);

/* Partially inlined: the early return stays in the callers. */
static int append(struct buf *b, const char *s)
{
	if (!s || !*s)
		return 0;
	unsigned n = strlen(s);
	if (b->len + n > b->cap && grow(b, b->len + n) < 0) {
		fprintf(stderr, "append: cannot grow past %u bytes\n", b->len);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\t')
			c = ' ';
		if (c == '\r')
			continue;
		b->data[b->len++] = c;
	}
	b->dirty = 1;
	printf("appended %u\n", n);
	return (int)n;
}

/* Only one field of the structure is used. */
static __attribute__((noinline)) unsigned used(const struct buf *b)
{
	return b->len * 3 + 2;
}

/* Always called with the same mode. */
static __attribute__((noinline)) int scale(int x, int mode)
{
	if (mode == 1)
		return x * 7 + 2;
	return x / 3 - mode;
}

int a1(struct buf *b) { return append(b, "one"); }
int a2(struct buf *b, const char *s) { return append(b, s) + 1; }
int a3(struct buf *b, const char *s) { return append(b, s) * 2; }
int a4(struct buf *b, const char *s) { return append(b, s) - 3 + (int)used(b); }

/* Reached only on errors: what calls it goes to the .cold part. */
__attribute__((cold, noinline)) void complain(const char *what)
{
	fprintf(stderr, "complaint: %s\n", what);
}

int checked(struct buf *b, const int *v, int n)
{
	int s = 0;
	for (int i = 0; i < n; i++) {
		if (__builtin_expect(v[i] < 0, 0)) {
			complain("negative");
			fprintf(stderr, "checked: missing buffer at %d\n", i);
			exit(1);
		}
		s += v[i];
	}
	return s + scale(n, 1) + scale(b->dirty, 1) + (int)used(b);
}
