#include <string>
#include <vector>
#include <stdexcept>
#include <cstdio>
template <typename T> T add(T a, T b) { return a + b; }
struct Shape { virtual ~Shape() {} virtual int area() const = 0; };
struct Sq : Shape { int s; Sq(int s) : s(s) {} int area() const override { return s*s; } };
static std::string gname = "hello";
inline int &inl() { static int x = 3; return x; }
int thrower(int x) { if (x < 0) throw std::runtime_error("neg"); return x; }
int catcher(int x) { try { return thrower(x); } catch (const std::exception &e) { std::puts(e.what()); return -1; } }
int use(int n) { std::vector<int> v; for (int i = 0; i < n; i++) v.push_back(add(i, 1)); Sq q(n); Shape *s = &q; return s->area() + (int)v.size() + inl() + (int)gname.size() + (int)add(1.0, 2.0); }
