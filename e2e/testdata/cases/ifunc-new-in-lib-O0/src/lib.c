int lib_count(int x)
{
	return x + 1;
}
