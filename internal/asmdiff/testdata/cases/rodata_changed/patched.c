/* Read-only data is not live state: a changed const table goes into the
 * patch and every function that reads it changes; so does a function whose
 * switch gcc turned into a lookup table (CSWTCH.N). */
static const int weights[8] = { 1, 2, 4, 8, 16, 32, 64, 129 };
const char *const colours[] = { "red", "green", "blue" };

int weigh(int i)
{
	return weights[i & 7];
}

int weigh_twice(int i)
{
	return 2 * weights[(i + 1) & 7];
}

const char *colour(int i)
{
	return colours[i % 3];
}

int lookup(int x)
{
	switch (x) {
	case 0: return 11;
	case 1: return 22;
	case 2: return 34;
	case 3: return 44;
	case 4: return 55;
	default: return 0;
	}
}

int untouched(int x)
{
	return x + 5;
}
