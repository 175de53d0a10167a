// A new global whose initialiser runs at start-up cannot be set up in a
// process that is already running: refused.
#include <cstdlib>

static int seed = 1;
static int limit = std::atoi(std::getenv("LIMIT") ? std::getenv("LIMIT") : "10");

int next()
{
	return seed++ % limit;
}
