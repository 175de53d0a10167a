/* A new thread-local variable is refused with a clear message. */
__thread int calls;

int plain(int x)
{
	calls++;
	return x + 1;
}
