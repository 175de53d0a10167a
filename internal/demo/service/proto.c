/*
 * echod's requests: the protocol handlers. echod.c holds the event loop.
 *
 * Protocol, one request per line:
 *   PING <n> <text>   ->  PONG <the first n bytes of text>
 *   STATS             ->  STATS requests=<count> clients=<count>
 *
 * PING has a Heartbleed-style bug on purpose: it trusts the length the
 * client sends and echoes that many bytes of its buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echod.h"

/* The session keeps the payload next to the key it signs replies with:
 * an over-long read of one leaks the other. */
struct session {
	char payload[64];
	char signing_key[64];
};

static struct session session = {
	.signing_key = "SECRET-KEY:6f1d9a2c-do-not-share",
};
static unsigned long requests;
int clients;

void reply(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		data += n;
		len -= (size_t)n;
	}
}

/* Printable copy, so that leaked bytes show on a terminal. */
static size_t printable(char *out, const char *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (in[i] >= 0x20 && in[i] < 0x7f) ? in[i] : '.';
	return n;
}

static void handle_ping(int fd, const char *args)
{
	char out[160];
	char *end;
	unsigned long n = strtoul(args, &end, 10);
	const char *text = (*end == ' ') ? end + 1 : end;

	memset(session.payload, 0, sizeof(session.payload));
	strncpy(session.payload, text, sizeof(session.payload) - 1);
	if (n > 128)
		n = 128;
	size_t len = (size_t)snprintf(out, sizeof(out), "PONG ");
	len += printable(out + len, session.payload, n);
	out[len++] = '\n';
	reply(fd, out, len);
}

void handle_line(int fd, char *line)
{
	requests++;
	if (strncmp(line, "PING ", 5) == 0) {
		handle_ping(fd, line + 5);
	} else if (strcmp(line, "STATS") == 0) {
		char out[96];
		int len = snprintf(out, sizeof(out), "STATS requests=%lu clients=%d\n", requests, clients);
		reply(fd, out, (size_t)len);
	} else {
		reply(fd, "ERR unknown request\n", 20);
	}
}

