// A C++ target: patch code that throws and catches an exception needs its
// call frame information registered with the program's unwinder.
#include <cstdio>
#include <stdexcept>
#include <unistd.h>

extern "C" __attribute__((noipa)) int parse(const char *s) { return s[0] ? 1 : -1; }

int main() {
	// Throw once so that the unwinder is initialised, as in any C++
	// program that has handled an exception.
	try {
		throw std::runtime_error("warm-up");
	} catch (const std::exception &) {
	}
	std::printf("ready\n");
	std::fflush(stdout);
	for (;;) {
		std::printf("parse=%d\n", parse(""));
		std::fflush(stdout);
		usleep(3000);
	}
}
