#ifndef UTIL_H
#define UTIL_H
__attribute__((visibility("hidden"))) int clamp(int v, int lo, int hi);
#endif
