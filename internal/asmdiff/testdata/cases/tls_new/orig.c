/* A new thread-local variable is refused with a clear message. */
int plain(int x)
{
	return x + 1;
}
