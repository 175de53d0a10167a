/*
 * echod: a tiny line-based TCP service, bundled with hotpatch as the live
 * patching demo. This file is the event loop; proto.c answers requests and
 * holds the bug the demo fixes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 64

#include "echod.h"

struct conn {
	int fd;
	size_t used;
	char buf[LINE_MAX_LEN];
};

/* Returns 0 when the connection is finished. */
static int serve(struct conn *c)
{
	ssize_t n = read(c->fd, c->buf + c->used, sizeof(c->buf) - 1 - c->used);
	if (n < 0 && errno == EINTR) {
		fprintf(stderr, "echod: read interrupted (EINTR)\n");
		return 1;
	}
	if (n <= 0)
		return 0;
	c->used += (size_t)n;
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->used);
		if (!nl)
			break;
		*nl = '\0';
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = '\0';
		handle_line(c->fd, c->buf);
		size_t rest = c->used - (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, rest);
		c->used = rest;
	}
	if (c->used == sizeof(c->buf) - 1) {
		reply(c->fd, "ERR line too long\n", 18);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 7070;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	struct pollfd pfd[MAX_CLIENTS + 1];
	struct conn conns[MAX_CLIENTS + 1];

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 16) < 0) {
		perror("echod: listen");
		return 1;
	}
	printf("echod: listening on 127.0.0.1:%d, pid %d\n", port, (int)getpid());
	fflush(stdout);

	int nfds = 1;
	pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (;;) {
		int r = poll(pfd, (nfds_t)nfds, -1);
		if (r < 0) {
			if (errno == EINTR) {
				fprintf(stderr, "echod: poll interrupted (EINTR)\n");
				continue;
			}
			perror("echod: poll");
			return 1;
		}
		if ((pfd[0].revents & POLLIN) && nfds <= MAX_CLIENTS) {
			int fd = accept(lfd, NULL, NULL);
			if (fd >= 0) {
				conns[nfds] = (struct conn){ .fd = fd };
				pfd[nfds++] = (struct pollfd){ .fd = fd, .events = POLLIN };
				clients++;
			}
		}
		for (int i = 1; i < nfds; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!serve(&conns[i])) {
				close(pfd[i].fd);
				clients--;
				pfd[i] = pfd[nfds - 1];
				conns[i] = conns[nfds - 1];
				nfds--;
				i--;
			}
		}
	}
}
