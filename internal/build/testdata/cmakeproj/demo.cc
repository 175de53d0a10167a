#include <iostream>
#include "shapes.h"

int main()
{
	shapes::Registry r;
	r.add(shapes::make_square(2));
	r.add(shapes::make_circle(1));
	try {
		r.add(shapes::make_square(-1));
	} catch (const std::exception &e) {
		std::cout << "refused: " << e.what() << "\n";
	}
	std::cout << r.describe() << "total " << r.total() << "\n";
	return 0;
}
