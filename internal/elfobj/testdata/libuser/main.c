/* Loads libt.so and reports, for the test, the TLS module id the dynamic
 * linker gave it, then waits on stdin. */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int lib_use(char *dst, const char *src, size_t n);
void lib_report(void);
int lib_foo(void);

static int find_modid(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	if (strstr(info->dlpi_name, "libt.so"))
		printf("libt modid=%zu base=%p\n", info->dlpi_tls_modid, (void *)info->dlpi_addr);
	return 0;
}

int main(void)
{
	char buf[16];
	printf("use=%d foo=%d\n", lib_use(buf, "abc", 4), lib_foo());
	lib_report();
	dl_iterate_phdr(find_modid, NULL);
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
