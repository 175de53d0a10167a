const char *build_time(void)
{
	return "built at " __DATE__ " " __TIME__;
}
