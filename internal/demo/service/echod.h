#ifndef ECHOD_H
#define ECHOD_H

#include <stddef.h>

#define LINE_MAX_LEN 256

extern int clients;

void reply(int fd, const char *data, size_t len);
void handle_line(int fd, char *line);

#endif
