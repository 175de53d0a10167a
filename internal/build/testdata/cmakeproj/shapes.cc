#include <stdexcept>
#include "shapes.h"

namespace shapes {
namespace {

class Square : public Shape {
public:
	explicit Square(double side) : side_(side) {}
	double area() const override { return side_ * side_; }
	std::string name() const override { return "square"; }

private:
	double side_;
};

class Circle : public Shape {
public:
	explicit Circle(double r) : r_(r) {}
	double area() const override { return 3.14159 * r_ * r_; }
	std::string name() const override { return "circle"; }

private:
	double r_;
};

} // namespace

std::unique_ptr<Shape> make_square(double side)
{
	if (side < 0)
		throw std::invalid_argument("negative side");
	return std::make_unique<Square>(side);
}

std::unique_ptr<Shape> make_circle(double radius)
{
	return std::make_unique<Circle>(radius);
}

} // namespace shapes
