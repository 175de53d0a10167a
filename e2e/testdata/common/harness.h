/*
 * The request loop shared by the end-to-end case programs. The test writes
 * one line on stdin per check; the program answers with case_report()'s
 * lines and "--end--". The main thread therefore sits in read() whenever
 * it is patched, and a read that fails with EINTR is reported, never
 * retried silently.
 */
#ifndef HOTPATCH_E2E_HARNESS_H
#define HOTPATCH_E2E_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Each case defines what it prints for a request. */
static void case_report(const char *request);

/* Called through a pointer the compiler cannot see through, so that
 * case_report and what it inlines never become part of the loop: a
 * function that is always on the stack can never be patched. */
static void (*volatile harness_report)(const char *) = case_report;

static int harness_loop(void)
{
	char line[256];

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready pid=%d\n", (int)getpid());
	for (;;) {
		errno = 0;
		if (!fgets(line, sizeof(line), stdin)) {
			if (errno == EINTR) {
				printf("EINTR in read\n");
				clearerr(stdin);
				continue;
			}
			return 0;
		}
		line[strcspn(line, "\n")] = '\0';
		harness_report(line);
		printf("--end--\n");
		fflush(stdout);
	}
}

#endif
