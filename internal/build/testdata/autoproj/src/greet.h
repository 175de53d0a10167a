#ifndef GREET_H
#define GREET_H
char *greeting(const char *who);
int greet_count(void);
#endif
