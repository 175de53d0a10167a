/*
 * kvd: a small in-memory key-value store speaking a line protocol on
 * standard input, the kind of long-running service hotpatch is for.
 *
 *   SET key value [ttl]   GET key   DEL key   INCR key [by]
 *   KEYS prefix           STATS     EXPIRE    QUIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KVD_VERSION "1.4.2"
#define MAX_LINE 4096
#define MAX_ARGS 8
#define INITIAL_BUCKETS 64

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct entry {
	char *key;
	char *value;
	size_t value_len;
	time_t expires; /* 0: never */
	uint64_t hits;
	struct entry *next;      /* bucket chain */
	struct entry *lru_prev;  /* least recently used at the tail */
	struct entry *lru_next;
};

struct table {
	struct entry **buckets;
	size_t nbuckets;
	size_t count;
	size_t bytes;
	size_t max_bytes;
	struct entry *lru_head, *lru_tail;
};

struct stats {
	uint64_t commands;
	uint64_t gets, hits, misses;
	uint64_t sets, deletes, evictions, expirations;
	uint64_t errors;
	time_t started;
};

struct config {
	enum log_level level;
	size_t max_bytes;
	int echo;
	char name[64];
};

static struct table table;
static struct stats stats;
static struct config config = { LOG_INFO, 1 << 20, 0, "kvd" };
static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* Logging. */

static void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < config.level)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s[%s]: ", config.name, level_names[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		log_msg(LOG_ERROR, "out of memory allocating %zu bytes", n);
		exit(2);
	}
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Hashing: FNV-1a. */

static uint64_t hash_key(const char *key)
{
	uint64_t h = 1469598103934665603ULL;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The LRU list. */

static void lru_unlink(struct table *t, struct entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		t->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		t->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct table *t, struct entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = t->lru_head;
	if (t->lru_head)
		t->lru_head->lru_prev = e;
	t->lru_head = e;
	if (!t->lru_tail)
		t->lru_tail = e;
}

static void lru_touch(struct table *t, struct entry *e)
{
	if (t->lru_head == e)
		return;
	lru_unlink(t, e);
	lru_push_front(t, e);
}

/* The table. */

static void table_init(struct table *t, size_t max_bytes)
{
	t->nbuckets = INITIAL_BUCKETS;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets) {
		log_msg(LOG_ERROR, "cannot allocate %zu buckets", t->nbuckets);
		exit(2);
	}
	t->count = t->bytes = 0;
	t->max_bytes = max_bytes;
	t->lru_head = t->lru_tail = NULL;
}

static size_t entry_size(const struct entry *e)
{
	return sizeof(*e) + strlen(e->key) + 1 + e->value_len + 1;
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free(e->value);
	free(e);
}

static void table_grow(struct table *t)
{
	size_t n = t->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (!b) {
		log_msg(LOG_WARN, "cannot grow the table to %zu buckets", n);
		return;
	}
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct entry *e = t->buckets[i];
		while (e) {
			struct entry *next = e->next;
			size_t j = hash_key(e->key) & (n - 1);
			e->next = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
	log_msg(LOG_DEBUG, "table grown to %zu buckets", n);
}

static struct entry **table_slot(struct table *t, const char *key)
{
	struct entry **pp = &t->buckets[hash_key(key) & (t->nbuckets - 1)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void table_remove(struct table *t, struct entry **pp)
{
	struct entry *e = *pp;
	*pp = e->next;
	lru_unlink(t, e);
	t->count--;
	t->bytes -= entry_size(e);
	entry_free(e);
}

static int expired(const struct entry *e, time_t now)
{
	return e->expires != 0 && e->expires <= now;
}

static struct entry *table_get(struct table *t, const char *key, time_t now)
{
	struct entry **pp = table_slot(t, key);
	if (!*pp)
		return NULL;
	if (expired(*pp, now)) {
		table_remove(t, pp);
		stats.expirations++;
		return NULL;
	}
	lru_touch(t, *pp);
	(*pp)->hits++;
	return *pp;
}

static void evict(struct table *t, size_t need)
{
	while (t->lru_tail && t->bytes + need > t->max_bytes) {
		struct entry *victim = t->lru_tail;
		log_msg(LOG_DEBUG, "evicting %s", victim->key);
		table_remove(t, table_slot(t, victim->key));
		stats.evictions++;
	}
}

static int table_set(struct table *t, const char *key, const char *value, size_t len, time_t expires)
{
	struct entry **pp = table_slot(t, key);
	if (*pp)
		table_remove(t, pp);
	struct entry *e = xmalloc(sizeof(*e));
	e->key = xstrndup(key, strlen(key));
	e->value = xstrndup(value, len);
	e->value_len = len;
	e->expires = expires;
	e->hits = 0;
	size_t size = entry_size(e);
	if (size > t->max_bytes) {
		entry_free(e);
		return -1;
	}
	evict(t, size);
	if (t->count >= t->nbuckets * 3 / 4)
		table_grow(t);
	pp = table_slot(t, key);
	e->next = NULL;
	*pp = e;
	lru_push_front(t, e);
	t->count++;
	t->bytes += size;
	return 0;
}

static size_t table_expire(struct table *t, time_t now)
{
	size_t n = 0;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct entry **pp = &t->buckets[i];
		while (*pp) {
			if (expired(*pp, now)) {
				table_remove(t, pp);
				n++;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	stats.expirations += n;
	return n;
}

/* The protocol. */

static int split_args(char *line, char **argv, int max)
{
	int argc = 0;
	char *p = line;
	while (*p && argc < max) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		argv[argc++] = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p)
			*p++ = '\0';
	}
	return argc;
}

static int parse_number(const char *s, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static void reply(FILE *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	fflush(out);
}

static void reply_error(FILE *out, const char *what)
{
	stats.errors++;
	reply(out, "-ERR %s", what);
}

static void cmd_set(FILE *out, int argc, char **argv, time_t now)
{
	long long ttl = 0;
	if (argc < 3 || argc > 4) {
		reply_error(out, "usage: SET key value [ttl]");
		return;
	}
	if (argc == 4 && (parse_number(argv[3], &ttl) < 0 || ttl < 0)) {
		reply_error(out, "bad ttl");
		return;
	}
	stats.sets++;
	if (table_set(&table, argv[1], argv[2], strlen(argv[2]), ttl ? now + ttl : 0) < 0) {
		reply_error(out, "value too large");
		return;
	}
	reply(out, "+OK");
}

static void cmd_get(FILE *out, int argc, char **argv, time_t now)
{
	if (argc != 2) {
		reply_error(out, "usage: GET key");
		return;
	}
	stats.gets++;
	struct entry *e = table_get(&table, argv[1], now);
	if (!e) {
		stats.misses++;
		reply(out, "$-1");
		return;
	}
	stats.hits++;
	reply(out, "$%zu %s", e->value_len, e->value);
}

static void cmd_del(FILE *out, int argc, char **argv, time_t now)
{
	(void)now;
	if (argc != 2) {
		reply_error(out, "usage: DEL key");
		return;
	}
	struct entry **pp = table_slot(&table, argv[1]);
	if (!*pp) {
		reply(out, ":0");
		return;
	}
	table_remove(&table, pp);
	stats.deletes++;
	reply(out, ":1");
}

static void cmd_incr(FILE *out, int argc, char **argv, time_t now)
{
	long long by = 1, v = 0;
	char buf[32];
	if (argc < 2 || argc > 3) {
		reply_error(out, "usage: INCR key [by]");
		return;
	}
	if (argc == 3 && parse_number(argv[2], &by) < 0) {
		reply_error(out, "bad increment");
		return;
	}
	struct entry *e = table_get(&table, argv[1], now);
	if (e && parse_number(e->value, &v) < 0) {
		reply_error(out, "value is not a number");
		return;
	}
	v += by;
	int n = snprintf(buf, sizeof(buf), "%lld", v);
	table_set(&table, argv[1], buf, (size_t)n, e ? e->expires : 0);
	reply(out, ":%lld", v);
}

static void cmd_keys(FILE *out, int argc, char **argv, time_t now)
{
	const char *prefix = argc > 1 ? argv[1] : "";
	size_t plen = strlen(prefix), n = 0;
	for (size_t i = 0; i < table.nbuckets; i++)
		for (struct entry *e = table.buckets[i]; e; e = e->next)
			if (!expired(e, now) && strncmp(e->key, prefix, plen) == 0) {
				reply(out, "%s", e->key);
				n++;
			}
	reply(out, "*%zu", n);
}

static void cmd_stats(FILE *out, int argc, char **argv, time_t now)
{
	(void)argc;
	(void)argv;
	double ratio = stats.gets ? (double)stats.hits / (double)stats.gets : 0.0;
	reply(out, "version %s uptime %ld", KVD_VERSION, (long)(now - stats.started));
	reply(out, "commands %llu errors %llu", (unsigned long long)stats.commands,
	      (unsigned long long)stats.errors);
	reply(out, "keys %zu bytes %zu/%zu buckets %zu", table.count, table.bytes, table.max_bytes, table.nbuckets);
	reply(out, "gets %llu hit-ratio %.3f", (unsigned long long)stats.gets, ratio);
	reply(out, "sets %llu deletes %llu evictions %llu expirations %llu", (unsigned long long)stats.sets,
	      (unsigned long long)stats.deletes, (unsigned long long)stats.evictions,
	      (unsigned long long)stats.expirations);
}

static void cmd_expire(FILE *out, int argc, char **argv, time_t now)
{
	(void)argc;
	(void)argv;
	reply(out, ":%zu", table_expire(&table, now));
}

struct command {
	const char *name;
	void (*run)(FILE *, int, char **, time_t);
};

static const struct command commands[] = {
	{ "SET", cmd_set }, { "GET", cmd_get }, { "DEL", cmd_del }, { "INCR", cmd_incr },
	{ "KEYS", cmd_keys }, { "STATS", cmd_stats }, { "EXPIRE", cmd_expire },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcasecmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int handle_line(FILE *out, char *line)
{
	char *argv[MAX_ARGS];
	size_t len = strlen(line);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	if (config.echo)
		log_msg(LOG_DEBUG, "< %s", line);
	int argc = split_args(line, argv, MAX_ARGS);
	if (argc == 0)
		return 0;
	stats.commands++;
	if (strcasecmp(argv[0], "QUIT") == 0) {
		reply(out, "+BYE");
		return 1;
	}
	const struct command *c = find_command(argv[0]);
	if (!c) {
		reply_error(out, "unknown command");
		return 0;
	}
	c->run(out, argc, argv, time(NULL));
	return 0;
}

static void configure(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-v") == 0) {
			config.level = LOG_DEBUG;
		} else if (strcmp(a, "-q") == 0) {
			config.level = LOG_ERROR;
		} else if (strcmp(a, "-e") == 0) {
			config.echo = 1;
		} else if (strncmp(a, "--max-bytes=", 12) == 0) {
			long long v;
			if (parse_number(a + 12, &v) < 0 || v <= 0) {
				log_msg(LOG_ERROR, "bad --max-bytes: %s", a + 12);
				exit(1);
			}
			config.max_bytes = (size_t)v;
		} else if (strncmp(a, "--name=", 7) == 0) {
			snprintf(config.name, sizeof(config.name), "%s", a + 7);
		} else {
			log_msg(LOG_ERROR, "unknown option %s", a);
			exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	char line[MAX_LINE];
	configure(argc, argv);
	table_init(&table, config.max_bytes);
	stats.started = time(NULL);
	log_msg(LOG_INFO, "kvd %s ready, %zu bytes", KVD_VERSION, config.max_bytes);
	while (fgets(line, sizeof(line), stdin)) {
		if (handle_line(stdout, line))
			break;
	}
	log_msg(LOG_INFO, "bye after %llu commands", (unsigned long long)stats.commands);
	return 0;
}
