/* Inline assembly with numeric local labels and statement separators,
 * copied into patch code as it is. */
int spin(int n)
{
	int r = 0;
	__asm__ volatile(
		"1:\n\t"
		"addl $1, %0\n\t"
		"cmpl %1, %0\n\t"
		"jl 1b; nop"
		: "+r"(r) : "r"(n));
	return r + 1;
}

int other(int x)
{
	return x - 1;
}
