#pragma once
#include <memory>
#include <string>
#include <vector>

namespace shapes {

class Shape {
public:
	virtual ~Shape() = default;
	virtual double area() const = 0;
	virtual std::string name() const = 0;
};

std::unique_ptr<Shape> make_square(double side);
std::unique_ptr<Shape> make_circle(double radius);

template <typename T>
T total_area(const std::vector<std::unique_ptr<Shape>> &all)
{
	T sum = 0;
	for (const auto &s : all)
		sum += static_cast<T>(s->area());
	return sum;
}

class Registry {
public:
	void add(std::unique_ptr<Shape> s);
	std::size_t size() const { return items_.size(); }
	double total() const;
	std::string describe() const;

private:
	std::vector<std::unique_ptr<Shape>> items_;
};

} // namespace shapes
