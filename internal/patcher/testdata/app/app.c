/* The patch target: prints one line of results every few milliseconds,
 * from several threads, until killed. Every function a test patches is
 * noipa so that its callers go through its entry and gcc assumes nothing
 * about what it returns. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lib_value(int x);
int lib_tls_value(void);

int global_counter = 1000;
static int hidden = 7;
static const char greeting[] = "hello";
__thread int exe_tls = 5;

__attribute__((noipa)) int compute(int x) { return x + 1; }
__attribute__((noipa)) const char *message(void) { return "old"; }
__attribute__((noipa)) int helper(int x) { return x * 3; }
__attribute__((noipa)) int ticks(void) {
	static int count;
	return ++count + hidden - 7;
}
/* Writes hidden, so that the compiler keeps it a variable. */
__attribute__((noipa)) void set_hidden(int v) { hidden = v; }
__attribute__((noipa)) int tls_value(void) { return exe_tls; }
__attribute__((noipa)) const char *greet(void) { return greeting; }
/* tiny is 3 bytes and tiny_next follows it at once: too short for a jump. */
int tiny(void);
asm(".text\n.globl tiny\n.type tiny,@function\ntiny: xor %eax,%eax\nret\n.size tiny,.-tiny\n"
    ".globl tiny_next\n.type tiny_next,@function\ntiny_next: mov $1,%eax\nret\n.size tiny_next,.-tiny_next\n");
__attribute__((noipa)) void spin_here(volatile int *stop) {
	while (!*stop)
		;
}

/* An ifunc of the program: the symbol's value is the resolver, and patch
 * code must call what the resolver chose. */
static int pick_plain(int x) { return x + 5; }
static void *resolve_pick(void) { return (void *)pick_plain; }
int pick(int x) __attribute__((ifunc("resolve_pick")));

static volatile int stop_spinning;

static void *worker(void *arg) {
	long id = (long)arg;
	char line[256];
	exe_tls += id; /* every thread has its own value */
	for (;;) {
		snprintf(line, sizeof line, "t%ld compute=%d message=%s ticks=%d tls=%d lib=%d libtls=%d greet=%s helper=%d tiny=%d pick=%d\n",
			 id, compute(1), message(), ticks() > 0, tls_value(), lib_value(1), lib_tls_value(), greet(), helper(1), tiny(), pick(1));
		fputs(line, stdout);
		fflush(stdout);
		usleep(2000 + 1000 * id);
	}
	return NULL;
}

static void *spinner(void *arg) {
	spin_here(&stop_spinning);
	return arg;
}

int main(int argc, char **argv) {
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	pthread_t t;
	if (argc > 2 && strcmp(argv[2], "spin") == 0)
		pthread_create(&t, NULL, spinner, NULL);
	for (long i = 1; i < threads; i++)
		pthread_create(&t, NULL, worker, (void *)i);
	printf("ready\n");
	fflush(stdout);
	worker((void *)0);
	return 0;
}
