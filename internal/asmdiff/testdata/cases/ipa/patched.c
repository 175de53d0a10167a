/* Inter-procedural effects: when the callee changes, gcc may change its
 * callers too (IPA register allocation knows which registers the callee
 * really clobbers). Such a caller really changed and must be patched. It
 * does not happen where the callee may be interposed (-fPIC). */
__attribute__((noinline)) int mix(int a, int b)
{
	int s = 0;
	for (int i = 0; i < b; i++)
		s += (a ^ i) * (b | i) + s / 7;
	return s;
}

int caller(int x, int y, int z)
{
	int t = mix(x, y);
	return t + mix(z, x) + x * y;
}
