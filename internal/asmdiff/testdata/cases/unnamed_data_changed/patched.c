/* gcc puts the initialiser of a large local array of string pointers in
 * unnamed writable data (.LCn in .data) and copies it with rep movsq. */
void reply_help(const char **help, int n);

void show(int verbose)
{
	const char *help[] = {
		"alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
		"golf", "hotel", "india", "juliet", "kilogram", "lima",
		"mike", "november", "oscar", "papa", "quebec", "romeo",
		"sierra", "tango", "uniform", "victor", "whiskey", "xray",
		"yankee", "zulu", "one", "two", "three", "four",
		"five", "six", "seven", "eight", "nine", "ten",
		0,
	};
	reply_help(help, verbose);
}

int other(int x)
{
	return x * 7 + 1;
}
