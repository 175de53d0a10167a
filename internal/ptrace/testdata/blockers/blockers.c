/* Threads blocked in read, accept, epoll_wait, futex and nanosleep. After
 * argv[1] milliseconds the main thread wakes each one; each reports whether
 * its call completed normally, failed with EINTR, or (nanosleep) returned
 * early. The tracer stops and injects system calls meanwhile. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int read_pipe[2], epoll_pipe[2], listen_fd, epfd;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int woken;
static long sleep_ms;
static char sock_path[108];

static void report(const char *what, long r) {
	if (r < 0)
		printf("%s failed: %s\n", what, errno == EINTR ? "EINTR" : strerror(errno));
	else
		printf("%s ok\n", what);
	fflush(stdout);
}

static void *do_read(void *a) {
	char c;
	report("read", read(read_pipe[0], &c, 1));
	return a;
}
static void *do_accept(void *a) {
	report("accept", accept(listen_fd, NULL, NULL));
	return a;
}
static void *do_epoll(void *a) {
	struct epoll_event ev;
	int r = epoll_wait(epfd, &ev, 1, -1);
	report("epoll_wait", r == 1 ? 0 : -1);
	return a;
}
static void *do_futex(void *a) {
	pthread_mutex_lock(&mu);
	while (!woken)
		pthread_cond_wait(&cond, &mu);
	pthread_mutex_unlock(&mu);
	report("futex", 0);
	return a;
}
static void *do_sleep(void *a) {
	struct timespec t0, t1, req = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = nanosleep(&req, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	if (r == 0 && el < sleep_ms) {
		printf("nanosleep short: %ld ms of %ld\n", el, sleep_ms);
		fflush(stdout);
		return a;
	}
	report("nanosleep", r);
	return a;
}

__attribute__((noipa)) int value(void) { return 1; }

int main(int argc, char **argv) {
	sleep_ms = argc > 1 ? atol(argv[1]) : 1000;
	if (pipe(read_pipe) || pipe(epoll_pipe))
		return 1;
	snprintf(sock_path, sizeof sock_path, "/tmp/hotpatch-blockers-%d", getpid());
	unlink(sock_path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(listen_fd, (void *)&sa, sizeof sa) || listen(listen_fd, 1))
		return 1;
	epfd = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN};
	epoll_ctl(epfd, EPOLL_CTL_ADD, epoll_pipe[0], &ev);
	pthread_t th[5];
	void *(*fns[5])(void *) = {do_read, do_accept, do_epoll, do_futex, do_sleep};
	for (int i = 0; i < 5; i++)
		pthread_create(&th[i], NULL, fns[i], NULL);
	usleep(100000);
	printf("ready\n");
	fflush(stdout);
	struct timespec req = {sleep_ms / 1000 + 1, (sleep_ms % 1000) * 1000000};
	while (nanosleep(&req, &req) && errno == EINTR)
		;
	if (write(read_pipe[1], "x", 1) != 1 || write(epoll_pipe[1], "x", 1) != 1)
		return 1;
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	connect(c, (void *)&sa, sizeof sa);
	pthread_mutex_lock(&mu);
	woken = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < 5; i++)
		pthread_join(th[i], NULL);
	unlink(sock_path);
	printf("value=%d\n", value());
	printf("done\n");
	fflush(stdout);
	return 0;
}
