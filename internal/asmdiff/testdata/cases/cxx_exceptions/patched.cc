// Exceptions: a changed function with try/catch takes its LSDA
// (.gcc_except_table) and personality into the patch.
#include <cstdio>
#include <stdexcept>

int parse(int x)
{
	if (x < 0)
		throw std::invalid_argument("negative");
	if (x > 1000)
		throw std::out_of_range("too big");
	return x * 2;
}

int safe_parse(int x)
{
	try {
		return parse(x);
	} catch (const std::invalid_argument &e) {
		std::printf("invalid: %s\n", e.what());
		return -1;
	} catch (const std::exception &e) {
		std::printf("other error: %s\n", e.what());
		return -3;
	}
}

int untouched(int x)
{
	return x + 7;
}
