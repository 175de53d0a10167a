/* Jump tables in .rodata: a changed case changes its function; a second
 * switch whose table labels are renumbered does not change. */
int first(int op, int a, int b)
{
	switch (op) {
	case 0: return a + b;
	case 1: return a - b;
	case 2: return a * b + 1;
	case 3: return b ? a / b : 0;
	case 4: return a << b;
	case 5: return a >> b;
	case 6: return a & b;
	case 7: return a | b;
	case 9: return a && b;
	default: return -1;
	}
}

int second(int op, int a)
{
	switch (op) {
	case 10: return a + 1;
	case 11: return a * 11;
	case 12: return a - 12;
	case 13: return a ^ 13;
	case 14: return a % 14;
	case 15: return a / 15;
	case 16: return ~a;
	default: return 0;
	}
}
