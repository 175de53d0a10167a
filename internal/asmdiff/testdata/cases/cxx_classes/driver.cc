// Drives the case's functions for TestPatchedProgramBehaves.
#include <cstdio>
int total(int n);
int main()
{
	std::printf("%d %d\n", total(5), total(40));
	return 0;
}
