/* lib_scale is an ifunc that nothing calls before the patch: no loaded
 * object holds a resolved slot for it. */
static int lib_scale_plain(int x)
{
	return x * 1000;
}

static void *resolve_lib_scale(void)
{
	return (void *)lib_scale_plain;
}

int lib_scale(int x) __attribute__((ifunc("resolve_lib_scale")));

int lib_version(void)
{
	return 1;
}
