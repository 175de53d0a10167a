__thread int lib_calls = 7;
static __thread int lib_private;

int lib_tls_step(void)
{
	lib_calls += 1;
	lib_private += 1;
	return lib_calls * 10 + lib_private;
}
