// The initialiser of an existing global changed: running processes ran the
// old one and will not run the new one; the patch goes ahead with a warning.
#include <cstdlib>

struct Config {
	int level;
	Config() : level(std::getenv("LEVEL") ? std::atoi(std::getenv("LEVEL")) : 2) {}
};

static Config config;

int level()
{
	return config.level;
}
