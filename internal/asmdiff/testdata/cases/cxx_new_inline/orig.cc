// New inline functions, template instantiations and their unique statics
// live in COMDAT sections: in the patch they are weak and hidden, so that
// several translation units may each carry a copy.
template <typename T> struct Counter {
	static T bump(T by)
	{
		static T total;
		total += by;
		return total;
	}
};

int count_int(int by)
{
	return Counter<int>::bump(by);
}
