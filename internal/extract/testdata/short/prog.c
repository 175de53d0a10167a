/* Functions too short for the 5-byte jump, each followed at once by
 * another function: tiny (3 bytes) and four (4 bytes) have padding within
 * short-jump reach (before the 64-aligned function after them); walled (3
 * bytes) is walled in by 200-byte functions with no padding in reach. */
#include <stdio.h>
#include <unistd.h>

int tiny(void);
int tiny_next(void);
int four(int);
int four_next(int);
int walled(void);
asm(".text\n"
    ".p2align 6\n"
    ".globl tiny\n.type tiny,@function\ntiny: xor %eax,%eax\nret\n.size tiny,.-tiny\n"
    ".globl tiny_next\n.type tiny_next,@function\ntiny_next: mov $1,%eax\nret\n.size tiny_next,.-tiny_next\n"
    ".globl four\n.type four,@function\nfour: lea 1(%rdi),%eax\nret\n.size four,.-four\n"
    ".globl four_next\n.type four_next,@function\nfour_next: lea 2(%rdi),%eax\nret\n.size four_next,.-four_next\n"
    ".p2align 6\n"
    ".globl wall_a\n.type wall_a,@function\nwall_a: .fill 200,1,0x90\nret\n.size wall_a,.-wall_a\n"
    ".globl walled\n.type walled,@function\nwalled: xor %eax,%eax\nret\n.size walled,.-walled\n"
    ".globl wall_b\n.type wall_b,@function\nwall_b: .fill 200,1,0x90\nret\n.size wall_b,.-wall_b\n"
    ".p2align 6\n");

int main(void)
{
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		printf("t0 tiny=%d next=%d four=%d fnext=%d walled=%d\n", tiny(), tiny_next(), four(1), four_next(1), walled());
		fflush(stdout);
		usleep(2000);
	}
}
