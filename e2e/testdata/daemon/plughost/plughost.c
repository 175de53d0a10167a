/* Loads the library named by argv[1] with dlopen on "load", and prints
 * its plug_message() on "go". */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	char line[64];
	const char *(*msg)(void) = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	while (fgets(line, sizeof line, stdin)) {
		if (!strncmp(line, "load", 4)) {
			void *h = dlopen(argv[1], RTLD_NOW);
			if (!h) {
				printf("dlopen failed: %s\n", dlerror());
				continue;
			}
			msg = (const char *(*)(void))dlsym(h, "plug_message");
			printf("loaded\n");
		} else if (!strncmp(line, "go", 2)) {
			printf("msg %s\n", msg ? msg() : "none");
		}
	}
	return 0;
}
