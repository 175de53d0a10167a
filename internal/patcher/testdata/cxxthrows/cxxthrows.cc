// A C++ target that throws and catches an exception every few
// milliseconds: every throw searches all the call frame information
// registered with the unwinder, so a registration left behind by a region
// that was removed makes it fault at the next throw.
#include <cstdio>
#include <stdexcept>
#include <unistd.h>

extern "C" __attribute__((noipa)) int parse(const char *s) { return s[0] ? 1 : -1; }

__attribute__((noipa)) static int thrower(int i) {
	if (i >= 0)
		throw std::runtime_error("tick");
	return i;
}

int main() {
	std::printf("ready\n");
	std::fflush(stdout);
	for (int i = 0;; i++) {
		int caught = 0;
		try {
			thrower(i);
		} catch (const std::exception &) {
			caught = 1;
		}
		std::printf("throw=%d parse=%d\n", caught, parse(""));
		std::fflush(stdout);
		usleep(2000);
	}
}
