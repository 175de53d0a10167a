int util_base(void)
{
	return 1;
}
