#include "harness.h"
#include <stdlib.h>
#include <ucontext.h>

/* Two coroutines on stacks of their own, switched with swapcontext. One
 * is always suspended inside suspend_in(); the other calls called() and
 * suspends in its own body. */
static ucontext_t main_ctx, co1_ctx, co2_ctx;
static int last;

void __attribute__((noinline)) note(int x)
{
	__asm__ volatile("" : : "r"(x) : "memory");
}

int __attribute__((noinline)) suspend_in(int x)
{
	int v = x + 1;

	swapcontext(&co1_ctx, &main_ctx);
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
		swapcontext(&co2_ctx, &main_ctx);
	}
}

static void start(ucontext_t *ctx, void (*body)(void))
{
	size_t size = 256 << 10;

	getcontext(ctx);
	ctx->uc_stack.ss_sp = malloc(size);
	ctx->uc_stack.ss_size = size;
	ctx->uc_link = NULL;
	makecontext(ctx, body, 0);
	swapcontext(&main_ctx, ctx);
}

static void case_report(const char *request)
{
	if (strcmp(request, "resume1") == 0) {
		swapcontext(&main_ctx, &co1_ctx);
		printf("co1 suspended again\n");
		return;
	}
	swapcontext(&main_ctx, &co2_ctx);
	printf("called=%d\n", last);
}

int main(void)
{
	start(&co1_ctx, co1_body);
	start(&co2_ctx, co2_body);
	return harness_loop();
}
