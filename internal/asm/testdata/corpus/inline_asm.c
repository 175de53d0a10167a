/* Inline assembly with numeric labels, section switches and statement
 * separators, the way hand-tuned code writes it. */
#include <stdint.h>

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc; nop" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

int spin(int n)
{
	int r = 0;
	__asm__ volatile(
		"1:\n\t"
		"addl $1, %0 # count\n\t"
		"cmpl %1, %0\n\t"
		"jl 1b\n\t"
		".pushsection .rodata.spin, \"a\"\n"
		"spin_tag: .string \"spin;#\"\n"
		".popsection"
		: "+r"(r) : "r"(n));
	return r + (int)rdtsc();
}

__asm__(".globl toplevel\n\t.type toplevel, @function\ntoplevel:\n\tret\n\t.size toplevel, .-toplevel");
