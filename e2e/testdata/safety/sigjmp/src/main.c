#include "harness.h"
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>

/* Coroutines made the way QEMU's coroutine-sigaltstack makes them: a
 * signal handler running on a new alternate stack saves a context with
 * sigsetjmp and returns; jumping back to it later starts the coroutine
 * there. Switches are sigsetjmp/siglongjmp pairs. One coroutine is always
 * suspended inside suspend_in(); the other calls called() and suspends in
 * its own body. */
static sigjmp_buf main_env, co1_env, co2_env, tramp1, tramp2;
static sigjmp_buf *volatile tramp_env;
static void (*volatile tramp_body)(void);
static volatile sig_atomic_t tramp_ready;
static int last;

void __attribute__((noinline)) note(int x)
{
	__asm__ volatile("" : : "r"(x) : "memory");
}

static void yield_to(sigjmp_buf *from, sigjmp_buf *to)
{
	if (!sigsetjmp(*from, 0))
		siglongjmp(*to, 1);
}

int __attribute__((noinline)) suspend_in(int x)
{
	int v = x + 1;

	if (!sigsetjmp(co1_env, 0))
		siglongjmp(main_env, 1);
	note(v);
	return v;
}

int __attribute__((noinline)) called(int x)
{
	note(x);
	return x * 2 + 1;
}

static void co1_body(void)
{
	for (;;)
		suspend_in(1);
}

static void co2_body(void)
{
	for (;;) {
		last = called(3);
		yield_to(&co2_env, &main_env);
	}
}

static void trampoline(int sig)
{
	sigjmp_buf *self = tramp_env;
	void (*body)(void) = tramp_body;

	(void)sig;
	if (!sigsetjmp(*self, 0)) {
		tramp_ready = 1;
		return;
	}
	body();
	abort();
}

static void start(sigjmp_buf *tramp, void (*body)(void))
{
	size_t size = 256 << 10;
	stack_t ss = {.ss_sp = malloc(size), .ss_size = size}, off = {.ss_flags = SS_DISABLE};
	struct sigaction sa = {.sa_handler = trampoline, .sa_flags = SA_ONSTACK}, old;

	sigemptyset(&sa.sa_mask);
	tramp_env = tramp;
	tramp_body = body;
	tramp_ready = 0;
	sigaltstack(&ss, NULL);
	sigaction(SIGUSR2, &sa, &old);
	raise(SIGUSR2);
	while (!tramp_ready)
		;
	sigaltstack(&off, NULL);
	sigaction(SIGUSR2, &old, NULL);
	yield_to(&main_env, tramp);
}

static void case_report(const char *request)
{
	if (strcmp(request, "resume1") == 0) {
		yield_to(&main_env, &co1_env);
		printf("co1 suspended again\n");
		return;
	}
	yield_to(&main_env, &co2_env);
	printf("called=%d\n", last);
}

int main(void)
{
	start(&tramp1, co1_body);
	start(&tramp2, co2_body);
	return harness_loop();
}
