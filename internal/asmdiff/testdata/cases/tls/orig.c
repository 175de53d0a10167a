/* Thread-local variables reached with every access model gcc uses: local
 * exec (@tpoff), initial exec (@gottpoff), general and local dynamic
 * (@tlsgd, @tlsld) under -fPIC. References from patch code stay TLS
 * references, through slots where the model needs a GOT entry. */
__thread int counter = 3;
static __thread long scratch[4];
extern __thread int shared_tls;

int bump(int by)
{
	counter += by;
	scratch[by & 3] += counter;
	return counter + (int)scratch[0] + shared_tls;
}

int peek(void)
{
	return counter;
}
