// Drives the case's functions for TestPatchedProgramBehaves: exceptions
// are thrown through, and caught in, patch code.
#include <cstdio>
int safe_parse(int x);
int untouched(int x);
int main()
{
	static const int inputs[] = { 5, -1, 5000 };
	for (int x : inputs)
		std::printf("%d -> %d\n", x, safe_parse(x));
	std::printf("%d\n", untouched(1));
	return 0;
}
