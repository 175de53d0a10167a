#ifndef CALC_H
#define CALC_H
int calc_add(int a, int b);
int calc_scale(int a);
long calc_checksum(const char *s);
extern int calc_calls;
#endif
