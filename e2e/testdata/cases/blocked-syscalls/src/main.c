#include "harness.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

static int listen_fd;
static atomic_int accept_state;	/* 0 waiting, 1 accepted, 2 EINTR, 3 other error */
static atomic_int sleeps, short_sleeps;

const char *label(void)
{
	return "v1";
}

static void *acceptor(void *arg)
{
	(void)arg;
	int fd = accept(listen_fd, NULL, NULL);
	if (fd >= 0)
		atomic_store(&accept_state, 1);
	else
		atomic_store(&accept_state, errno == EINTR ? 2 : 3);
	return NULL;
}

/* Sleeps of 200 ms, timed: a sleep cut short by the patcher shows. */
static void *sleeper(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec a, b, d = { 0, 200 * 1000 * 1000 };
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (nanosleep(&d, NULL) != 0)
			atomic_fetch_add(&short_sleeps, 1);
		clock_gettime(CLOCK_MONOTONIC, &b);
		long ns = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
		if (ns < 200 * 1000 * 1000)
			atomic_fetch_add(&short_sleeps, 1);
		atomic_fetch_add(&sleeps, 1);
	}
	return NULL;
}

static void case_report(const char *request)
{
	static const char *states[] = { "waiting", "accepted", "EINTR", "error" };
	(void)request;
	printf("label=%s accept=%s short-sleeps=%d\n", label(),
	       states[atomic_load(&accept_state)], atomic_load(&short_sleeps));
}

int main(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);
	pthread_t t;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listen_fd, 1) < 0)
		return 1;
	getsockname(listen_fd, (struct sockaddr *)&addr, &len);
	printf("port=%d\n", ntohs(addr.sin_port));
	fflush(stdout);
	pthread_create(&t, NULL, acceptor, NULL);
	pthread_create(&t, NULL, sleeper, NULL);
	return harness_loop();
}
