/* A function removed from the patched file is ignored with a warning. */
int unused_now(int x)
{
	return x * 13;
}

int user(int x)
{
	return unused_now(x) + 1;
}
