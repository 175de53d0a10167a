// The complete-object constructor (C1) is an alias of the base-object one
// (C2) until the class gets a virtual base. Other translation units call
// C1 at C2's address, so C1 cannot become a function of its own in a
// patch: refused.
struct Base {
	int b = 1;
};

struct Widget : virtual Base {
	int w;
	Widget(int x);
};

Widget::Widget(int x) : w(x * 2) {}

int make(int x)
{
	Widget w(x);
	return w.w + w.b;
}
