/* Threads parked in known call chains, for the unwinder's tests.
 *
 * Every thread reaches its resting place through a chain of functions
 * that are neither inlined nor tail-called, then blocks in a system call
 * (nanosleep, read, pthread_join) or inside a signal handler:
 *
 *   sleeper:   sleeper_main -> sleep_top -> sleep_mid -> sleep_leaf -> nanosleep
 *   reader:    reader_main -> read_mid -> read_leaf -> read
 *   deep:      deep_main -> recurse x DEPTH -> sleep_leaf
 *   altsig:    altsig_main -> spin_alt (interrupted by SIGUSR1, handled on
 *              an alternate signal stack through glibc's __restore_rt)
 *              ... on_usr1 -> handler_leaf -> nanosleep
 *   rawsig:    rawsig_main -> spin_raw (interrupted by SIGUSR2, whose
 *              sa_restorer is raw_restorer below: no CFI at all)
 *              ... on_usr2 -> handler_leaf -> nanosleep
 *   main:      main -> pthread_join
 *
 * Each thread prints "thread NAME TID" once in place; "ready" follows when
 * all are. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 200
#define KEEP __attribute__((noipa))
#define BARRIER() __asm__ volatile("" ::: "memory")

static int pipefd[2];
static volatile int spinning_alt, spinning_raw;
static volatile int parked;

static void announce(const char *name)
{
	printf("thread %s %ld\n", name, (long)syscall(SYS_gettid));
	fflush(stdout);
	__sync_fetch_and_add(&parked, 1);
}

KEEP void sleep_leaf(const char *name)
{
	struct timespec ts = {100000, 0};
	announce(name);
	for (;;)
		nanosleep(&ts, NULL);
}

KEEP void sleep_mid(const char *name) { sleep_leaf(name); BARRIER(); }
KEEP void sleep_top(const char *name) { sleep_mid(name); BARRIER(); }
KEEP void *sleeper_main(void *arg) { (void)arg; sleep_top("sleeper"); BARRIER(); return NULL; }

KEEP void read_leaf(void)
{
	char c;
	announce("reader");
	while (read(pipefd[0], &c, 1) > 0)
		;
}

KEEP void read_mid(void) { read_leaf(); BARRIER(); }
KEEP void *reader_main(void *arg) { (void)arg; read_mid(); BARRIER(); return NULL; }

KEEP int recurse(int n)
{
	if (n == 0)
		sleep_leaf("deep");
	else
		recurse(n - 1);
	BARRIER();
	return n;
}

KEEP void *deep_main(void *arg) { (void)arg; recurse(DEPTH - 1); BARRIER(); return NULL; }

KEEP void handler_leaf(const char *name) { sleep_leaf(name); BARRIER(); }

KEEP void on_usr1(int sig) { (void)sig; handler_leaf("altsig"); BARRIER(); }
KEEP void on_usr2(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; handler_leaf("rawsig"); BARRIER(); }

KEEP void spin_alt(void)
{
	spinning_alt = 1;
	for (;;)
		BARRIER();
}

KEEP void spin_raw(void)
{
	spinning_raw = 1;
	for (;;)
		BARRIER();
}

KEEP void *altsig_main(void *arg)
{
	(void)arg;
	stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16};
	sigaltstack(&ss, NULL);
	spin_alt();
	BARRIER();
	return NULL;
}

KEEP void *rawsig_main(void *arg) { (void)arg; spin_raw(); BARRIER(); return NULL; }

/* A signal return trampoline without call frame information, as a
 * program with its own sa_restorer (or musl) has. */
__asm__(".text\n"
	".globl raw_restorer\n"
	".type raw_restorer,@function\n"
	"raw_restorer:\n"
	"\tmov $15, %rax\n"
	"\tsyscall\n"
	"\thlt\n"
	".size raw_restorer, .-raw_restorer\n");
void raw_restorer(void);

struct kernel_sigaction {
	void (*handler)(int, siginfo_t *, void *);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

int main(void)
{
	pthread_t t[5];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	struct kernel_sigaction ksa = {on_usr2, SA_SIGINFO | 0x04000000 /* SA_RESTORER */, raw_restorer, 0};
	if (syscall(SYS_rt_sigaction, SIGUSR2, &ksa, NULL, 8) != 0) {
		perror("rt_sigaction");
		return 1;
	}
	if (pipe(pipefd) != 0)
		return 1;
	pthread_create(&t[0], NULL, sleeper_main, NULL);
	pthread_create(&t[1], NULL, reader_main, NULL);
	pthread_create(&t[2], NULL, deep_main, NULL);
	pthread_create(&t[3], NULL, altsig_main, NULL);
	pthread_create(&t[4], NULL, rawsig_main, NULL);
	while (!spinning_alt || !spinning_raw)
		usleep(1000);
	pthread_kill(t[3], SIGUSR1);
	pthread_kill(t[4], SIGUSR2);
	while (parked < 5)
		usleep(1000);
	printf("thread main %ld\nready\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	pthread_join(t[0], NULL);
	return 0;
}
