#include "harness.h"
#include <stdexcept>
#include <string>

struct Counter {
	int n = 0;
	int step();
};

int Counter::step()
{
	n += 1;
	return n;
}

template <typename T> __attribute__((noinline)) T scale(T x)
{
	return x * 2;
}

/* The failure path is cold: gcc moves it to a .cold part of checked_div. */
__attribute__((cold, noinline)) void report_failure(const char *what)
{
	printf("failure: %s\n", what);
}

int checked_div(int a, int b)
{
	if (__builtin_expect(b == 0, 0)) {
		report_failure("division by zero");
		return 0;
	}
	return a / b;
}

int parse(const std::string &s)
{
	try {
		if (s.empty())
			throw std::invalid_argument("empty");
		return std::stoi(s);
	} catch (const std::exception &) {
		return -1;
	}
}

/* A static local of an inline function: one object for the whole program
 * (STB_GNU_UNIQUE), which patch code must share. */
inline int &shared_counter()
{
	static int c;
	return c;
}

int use_shared()
{
	return ++shared_counter();
}

static Counter counter;

static void case_report(const char *request)
{
	(void)request;
	int s = counter.step();
	int q0 = checked_div(10, 0);
	int q1 = checked_div(10, 3);
	printf("step=%d scale=%d,%g div=%d,%d parse=%d,%d shared=%d\n", s, scale(21), scale(1.5), q0, q1,
	       parse("42"), parse(""), use_shared());
}

int main()
{
	return harness_loop();
}
