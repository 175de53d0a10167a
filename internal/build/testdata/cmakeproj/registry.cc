#include <sstream>
#include <stdexcept>
#include "shapes.h"

namespace shapes {

void Registry::add(std::unique_ptr<Shape> s)
{
	items_.push_back(std::move(s));
}

double Registry::total() const
{
	return total_area<double>(items_);
}

std::string Registry::describe() const
{
	std::ostringstream out;
	for (const auto &s : items_)
		out << s->name() << " ";
	return out.str();
}

} // namespace shapes
