/* Thread-local variables of every access model the compiler picks. */
__thread int counter = 3;
static __thread long scratch[4];
extern __thread int shared_tls;

int bump(int by)
{
	counter += by;
	scratch[by & 3] += counter;
	return counter + (int)scratch[0] + shared_tls;
}
