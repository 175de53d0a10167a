#ifndef REPORT_H
#define REPORT_H
void report(const char *what, int value);
int report_count(void);
#endif
