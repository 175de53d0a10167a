#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "greet.h"

static int count;

char *greeting(const char *who)
{
	char buf[128];
	count++;
	snprintf(buf, sizeof buf, "hello, %s", who);
	return strdup(buf);
}

int greet_count(void)
{
	return count;
}
