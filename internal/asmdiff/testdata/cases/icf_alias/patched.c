/* Identical code folding: at -O2 gcc makes sb an alias of sa (.set sb,sa).
 * When the patch changes sa only, sb must keep its old behaviour: its
 * callers change to call a copy of sb, and the redirection of sa does not
 * drag sb along. */
__attribute__((noinline)) static int sa(const int *p, int n)
{
	int s = 1;
	for (int i = 0; i < n; i++)
		s ^= p[i] * 7 + (p[i] >> 3);
	return s;
}

__attribute__((noinline)) static int sb(const int *p, int n)
{
	int s = 1;
	for (int i = 0; i < n; i++)
		s ^= p[i] * 5 + (p[i] >> 3);
	return s;
}

int use_a(const int *p) { return sa(p, 3); }
int use_b(const int *p) { return sb(p, 4); }
