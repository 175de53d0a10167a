// C++: mangled names, virtual methods, templates instantiated in COMDAT
// sections, inline functions with a unique static, exception tables.
#include <cstdio>

namespace geo {

struct Shape {
	virtual ~Shape() {}
	virtual int area() const = 0;
	virtual const char *name() const { return "shape"; }
};

struct Square : Shape {
	int side;
	explicit Square(int s) : side(s) {}
	int area() const override { return side * side; }
	const char *name() const override { return "square"; }
};

struct Rect : Shape {
	int w, h;
	Rect(int w, int h) : w(w), h(h) {}
	int area() const override { return w * h; }
};

template <typename T> T clamp(T v, T lo, T hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

inline int &shared_counter()
{
	static int n = 0;
	return n;
}

struct Failure {
	int code;
};

int checked_area(const Shape &s)
{
	int a = s.area();
	if (a < 0)
		throw Failure{a};
	shared_counter()++;
	return clamp(a, 0, 1000000);
}

} // namespace geo

int total(int n)
{
	int sum = 0;
	for (int i = 0; i < n; i++) {
		geo::Square sq(i);
		geo::Rect r(i, i + 1);
		try {
			sum += geo::checked_area(sq) + geo::checked_area(r);
		} catch (const geo::Failure &f) {
			std::printf("failure %d\n", f.code);
			sum -= 1;
		}
	}
	return sum + (int)geo::clamp(2.5, 0.0, 1.0) + geo::shared_counter();
}
