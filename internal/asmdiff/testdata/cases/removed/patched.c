/* A function removed from the patched file is ignored with a warning. */
int user(int x)
{
	return x * 14 + 1;
}
