/* SPDX-License-Identifier: MIT */
/*
 * config - the INI file to a struct config, reporting every mistake with its
 * FILE:LINE.
 *
 * inih does the key/value splitting, but it reads through conf_read_line(),
 * which sees every raw line first: Debian's inih (r55) gives the handler no
 * line numbers, never shows it syntax errors, and would take an indented line
 * as a continuation of the key above. So the reader counts lines, strips the
 * indentation (there are no continuation lines in our format), reports lines
 * that are not blank, a comment, a [section] or key = value, keeps track of
 * the section itself and hands inih only lines it has judged well formed.
 */
#include "wgpunch/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#define CONF_MAX_NODES_LIMIT 16777216u
#define CONF_HOST_MAX 256 /* a DNS name is at most 253 characters */

enum conf_section {
	SEC_NONE = 0, /* before the first header */
	SEC_NODE,
	SEC_COORD,
	SEC_SKIP, /* unknown or malformed header: its keys are not judged (one error is enough) */
};

static const char *const conf_section_names[] = {
	[SEC_NODE] = "node",
	[SEC_COORD] = "coordinator",
};

enum {
	KEY_REQUIRED = 1 << 0,
	KEY_REPEATABLE = 1 << 1,
};

struct conf_error {
	int order; /* the config line it belongs to: messages print in file order */
	size_t seq;
	char *msg;
};

struct conf_parser {
	FILE *fp;
	const char *path; /* as given: every message starts with it */
	char *dir;        /* the folder of path as given, with its final '/' ("" for none) */
	struct config *c;

	char *raw; /* getline() buffer of the current line */
	size_t raw_cap;
	int lineno;
	enum conf_section section;
	int section_line[SEC_SKIP]; /* header line of [node] and [coordinator], 0: absent */
	int *key_line;              /* per conf_keys[] entry: first line that set it, 0: not set */

	int *coordinator_lines; /* line of each node.coordinators[i] */
	int *listen_lines;      /* line of each coord.listen[i] */
	int relay_ports_line;   /* 0: the default, -1: a bad value (already reported) */

	struct conf_error *errs;
	size_t n_errs, cap_errs;
	bool oom;
};

struct conf_key {
	enum conf_section section;
	const char *name;
	void (*parse)(struct conf_parser *p, const struct conf_key *k, const char *value);
	size_t offset; /* the field of struct config it fills */
	unsigned int flags;
	uint32_t min, max; /* integer keys */
};

/* ---- errors ---- */

static void conf_add_error(struct conf_parser *p, int order, char *msg)
{
	if (!msg) {
		p->oom = true;
		return;
	}
	if (p->n_errs == p->cap_errs) {
		size_t cap = p->cap_errs ? 2 * p->cap_errs : 16;
		struct conf_error *e = realloc(p->errs, cap * sizeof(*e));

		if (!e) {
			free(msg);
			p->oom = true;
			return;
		}
		p->errs = e;
		p->cap_errs = cap;
	}
	p->errs[p->n_errs] = (struct conf_error){ .order = order, .seq = p->n_errs, .msg = msg };
	p->n_errs++;
}

/* "FILE:LINE: message" for a line of another file (authorized_keys), sorted under order. */
static void conf_error_in(struct conf_parser *p, int order, const char *file, int line,
			  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void conf_error_in(struct conf_parser *p, int order, const char *file, int line,
			  const char *fmt, ...)
{
	char *body = NULL, *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&body, fmt, ap) < 0)
		body = NULL;
	va_end(ap);
	if (body && asprintf(&msg, "%s:%d: %s", file, line, body) < 0)
		msg = NULL;
	free(body);
	conf_add_error(p, order, msg);
}

#define conf_error(p, line, ...) conf_error_in((p), (line), (p)->path, (line), __VA_ARGS__)

static int conf_error_cmp(const void *a, const void *b)
{
	const struct conf_error *x = a, *y = b;

	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- small helpers ---- */

static void *conf_grow(struct conf_parser *p, void *array, size_t n, size_t size)
{
	/* Lists are short (a few coordinators or listen lines): grow one at a time. */
	void *a = realloc(array, (n + 1) * size);

	if (!a)
		p->oom = true;
	return a;
}

static char *conf_strdup(struct conf_parser *p, const char *s)
{
	char *d = strdup(s);

	if (!d)
		p->oom = true;
	return d;
}

static bool conf_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * Where chars or an inline comment start in s, as inih sees it: ';' only
 * opens a comment after white space, so "a;b" is a value.
 */
static const char *conf_find_chars_or_comment(const char *s, const char *chars)
{
	bool was_space = false;

	while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
		was_space = conf_is_space(*s);
		s++;
	}
	return s;
}

/*
 * A path from the config: relative ones are relative to the config file's
 * folder. *display is that path as the user can reach it from where they ran
 * us (for messages); *abs is absolute, so the running daemon and a printed
 * config do not depend on the working directory.
 */
static int conf_resolve_path(struct conf_parser *p, const char *value, char **display, char **abs)
{
	char cwd[PATH_MAX];

	*display = *abs = NULL;
	if (value[0] == '/')
		*display = strdup(value);
	else if (asprintf(display, "%s%s", p->dir, value) < 0)
		*display = NULL;
	if (!*display)
		goto oom;
	/* No working directory (removed under us): keep it relative, still right for now. */
	if ((*display)[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		*abs = strdup(*display);
	else if (asprintf(abs, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", *display) < 0)
		*abs = NULL;
	if (!*abs)
		goto oom;
	return 0;
oom:
	free(*display);
	*display = NULL;
	p->oom = true;
	return -ENOMEM;
}

static int conf_parse_uint(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -ERANGE;
	}
	if (v < min || v > max)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

/* ---- key parsers: each reports its own mistakes, as "KEY: message" ---- */

#define FIELD(p, k, type) ((type *)((char *)(p)->c + (k)->offset))

static void conf_parse_int_key(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	uint32_t v;
	int r = conf_parse_uint(value, k->min, k->max, &v);

	if (r == -ERANGE)
		conf_error(p, p->lineno, "%s: '%s' is out of range (%u-%u)", k->name, value, k->min,
			   k->max);
	else if (r < 0)
		conf_error(p, p->lineno, "%s: '%s' is not a number", k->name, value);
	else if (k->max <= UINT16_MAX) /* the field's width follows from the range */
		*FIELD(p, k, uint16_t) = (uint16_t)v;
	else
		*FIELD(p, k, uint32_t) = v;
}

static void conf_parse_bool(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*FIELD(p, k, bool) = true;
			return;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*FIELD(p, k, bool) = false;
			return;
		}
	}
	conf_error(p, p->lineno, "%s: '%s' is not a boolean (yes/no, true/false, on/off, 1/0)",
		   k->name, value);
}

static void conf_parse_backend(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	enum config_backend *b = FIELD(p, k, enum config_backend);

	if (strcasecmp(value, "auto") == 0)
		*b = CONFIG_BACKEND_AUTO;
	else if (strcasecmp(value, "kernel") == 0)
		*b = CONFIG_BACKEND_KERNEL;
	else if (strcasecmp(value, "userspace") == 0)
		*b = CONFIG_BACKEND_USERSPACE;
	else
		conf_error(p, p->lineno, "%s: '%s' is not one of auto, kernel, userspace", k->name,
			   value);
}

static void conf_parse_log_level(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	if (log_parse_level(value, FIELD(p, k, enum log_level)) < 0)
		conf_error(p, p->lineno, "%s: '%s' is not one of error, warn, info, debug", k->name,
			   value);
}

/* As the kernel's dev_valid_name(): 1-15 bytes, not "." or "..", no '/', ':' or white space. */
static void conf_parse_interface(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	size_t len = strlen(value);
	bool ok = len >= 1 && len < CONFIG_IFNAMSIZ && strcmp(value, ".") && strcmp(value, "..");

	for (const char *s = value; ok && *s; s++)
		ok = *s != '/' && *s != ':' && !conf_is_space(*s);
	if (!ok) {
		conf_error(p, p->lineno,
			   "%s: '%s' is not an interface name (1-15 characters, no '/', ':' or "
			   "white space)",
			   k->name, value);
		return;
	}
	/* After "= " such a name reads as a comment: the file could not say it again
	 * (config_print()'s output must load back). */
	if (value[0] == ';' || value[0] == '#') {
		conf_error(p, p->lineno, "%s: '%s' starts with a comment character", k->name,
			   value);
		return;
	}
	memcpy(FIELD(p, k, char), value, len + 1);
}

/* A path key: resolved against the config file's folder. */
static void conf_parse_path(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	char *display, *abs;

	if (conf_resolve_path(p, value, &display, &abs) < 0)
		return;
	free(display);
	free(*FIELD(p, k, char *));
	*FIELD(p, k, char *) = abs;
}

static void conf_parse_socket(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	struct sockaddr_un un;

	conf_parse_path(p, k, value);
	if (*FIELD(p, k, char *) && strlen(*FIELD(p, k, char *)) >= sizeof(un.sun_path))
		conf_error(p, p->lineno,
			   "%s: '%s' is too long for a socket path (at most %zu bytes)", k->name,
			   value, sizeof(un.sun_path) - 1);
}

/* "HOST:PORT PUBLIC_KEY": host a DNS name or IP literal, resolved later, never here. */
static void conf_parse_coordinator(struct conf_parser *p, const struct conf_key *k,
				   const char *value)
{
	struct config_node *n = &p->c->node;
	struct config_coordinator co = { 0 };
	char host[CONF_HOST_MAX], *copy, *save = NULL, *where, *pub, *extra;
	const char *port_s;
	bool ok = true;

	copy = conf_strdup(p, value);
	if (!copy)
		return;
	where = strtok_r(copy, " \t", &save);
	pub = strtok_r(NULL, " \t", &save);
	extra = strtok_r(NULL, " \t", &save);

	switch (addr_split_host_port_diag(where, host, sizeof(host), &co.port)) {
	case ADDR_SPLIT_OK:
		break;
	case ADDR_SPLIT_SYNTAX:
		conf_error(p, p->lineno,
			   "%s: '%s' is not HOST:PORT (an IPv6 address goes in brackets: "
			   "[2001:db8::1]:51900)",
			   k->name, where);
		ok = false;
		break;
	case ADDR_SPLIT_HOST:
		port_s = strrchr(where, ':');
		conf_error(p, p->lineno, "%s: '%.*s' is not a valid host name or IP address",
			   k->name, (int)(port_s - where), where);
		ok = false;
		break;
	case ADDR_SPLIT_PORT:
		port_s = strrchr(where, ':') + 1;
		conf_error(p, p->lineno, "%s: '%s' is not a valid port (1-65535)", k->name, port_s);
		ok = false;
		break;
	}
	if (!pub) {
		conf_error(p, p->lineno, "%s: the coordinator's public key is missing after '%s'",
			   k->name, where);
		ok = false;
	} else if (key_from_base64(co.public_key, pub) < 0) {
		conf_error(p, p->lineno,
			   "%s: '%s' is not a valid public key (44 characters of base64)", k->name,
			   pub);
		ok = false;
	}
	if (extra) {
		conf_error(p, p->lineno, "%s: unexpected '%s' after the public key", k->name,
			   extra);
		ok = false;
	}
	for (size_t i = 0; ok && i < n->n_coordinators; i++) {
		if (n->coordinators[i].port == co.port &&
		    !strcasecmp(n->coordinators[i].host, host)) {
			conf_error(p, p->lineno, "%s: %s repeats line %d", k->name, where,
				   p->coordinator_lines[i]);
			ok = false;
		}
	}
	free(copy);
	if (!ok)
		return;

	co.host = conf_strdup(p, host);
	struct config_coordinator *list =
		conf_grow(p, n->coordinators, n->n_coordinators, sizeof(*list));
	if (list)
		n->coordinators = list;
	int *lines = conf_grow(p, p->coordinator_lines, n->n_coordinators, sizeof(*lines));
	if (lines)
		p->coordinator_lines = lines;
	if (!co.host || !list || !lines) {
		free(co.host);
		return;
	}
	lines[n->n_coordinators] = p->lineno;
	list[n->n_coordinators++] = co;
}

static void conf_parse_listen(struct conf_parser *p, const struct conf_key *k, const char *value)
{
	struct config_coordinator_role *cr = &p->c->coord;
	char buf[ADDR_STRLEN];
	struct addr a;

	if (addr_parse(&a, value, false) < 0) {
		conf_error(p, p->lineno,
			   "%s: '%s' is not an IP address with port (203.0.113.1:51900, "
			   "[2001:db8::1]:51900)",
			   k->name, value);
		return;
	}
	if (addr_port(&a) == UINT16_MAX) {
		conf_error(p, p->lineno,
			   "%s: port 65535 leaves no port + 1 (the second probe port)", k->name);
		return;
	}
	for (size_t i = 0; i < cr->n_listen; i++) {
		int d = (int)addr_port(&a) - (int)addr_port(&cr->listen[i]);

		if (!addr_same_ip(&a, &cr->listen[i]) || d < -1 || d > 1)
			continue;
		if (d == 0)
			conf_error(p, p->lineno, "%s: %s repeats line %d", k->name,
				   addr_format(&a, buf), p->listen_lines[i]);
		else
			conf_error(p, p->lineno,
				   "%s: %s collides with line %d (each listen port P also takes P "
				   "+ 1)",
				   k->name, addr_format(&a, buf), p->listen_lines[i]);
		return;
	}

	struct addr *list = conf_grow(p, cr->listen, cr->n_listen, sizeof(*list));
	if (list)
		cr->listen = list;
	int *lines = conf_grow(p, p->listen_lines, cr->n_listen, sizeof(*lines));
	if (lines)
		p->listen_lines = lines;
	if (!list || !lines)
		return;
	lines[cr->n_listen] = p->lineno;
	list[cr->n_listen++] = a;
}

static void conf_parse_relay_ports(struct conf_parser *p, const struct conf_key *k,
				   const char *value)
{
	struct config_coordinator_role *cr = &p->c->coord;
	const char *dash = strchr(value, '-');
	uint32_t lo = 0, hi = 0;
	char *first;

	first = dash ? strndup(value, (size_t)(dash - value)) : NULL;
	if (!dash || !first || conf_parse_uint(first, 1, UINT16_MAX, &lo) < 0 ||
	    conf_parse_uint(dash + 1, 1, UINT16_MAX, &hi) < 0 || lo > hi) {
		conf_error(p, p->lineno, "%s: '%s' is not a port range A-B (1 <= A <= B <= 65535)",
			   k->name, value);
		p->relay_ports_line = -1;
	} else {
		cr->relay_port_min = (uint16_t)lo;
		cr->relay_port_max = (uint16_t)hi;
		p->relay_ports_line = p->lineno;
	}
	free(first);
}

static void conf_parse_private_key_file(struct conf_parser *p, const struct conf_key *k,
					const char *value)
{
	struct config_coordinator_role *cr = &p->c->coord;
	char *display, *abs, err[128];
	int r;

	if (conf_resolve_path(p, value, &display, &abs) < 0)
		return;
	free(cr->private_key_file);
	cr->private_key_file = abs;
	r = key_read_file(abs, cr->private_key, true, err, sizeof(err));
	if (r == 0 && key_public_from_private(cr->public_key, cr->private_key) < 0) {
		r = -EINVAL;
		snprintf(err, sizeof(err), "not a usable X25519 private key");
	}
	if (r < 0) {
		sodium_memzero(cr->private_key, sizeof(cr->private_key));
		conf_error(p, p->lineno, "%s: '%s': %s", k->name, display, err);
	}
	free(display);
}

/*
 * The path of a file wgpunch writes, into the char * field at k's offset: resolved against
 * the config's folder, and a name, not a folder. Returns the name as written (for messages;
 * the caller frees it), or NULL when it is refused.
 */
static char *conf_take_output_path(struct conf_parser *p, const struct conf_key *k,
				   const char *value)
{
	char **field = (char **)((char *)p->c + k->offset);
	char *display, *abs;
	size_t len;

	if (conf_resolve_path(p, value, &display, &abs) < 0)
		return NULL;
	free(*field);
	*field = abs;
	len = strlen(display);
	if (len && display[len - 1] == '/') {
		conf_error(p, p->lineno, "%s: '%s' names a folder, not a file", k->name, display);
		free(display);
		return NULL;
	}
	return display;
}

/* A file wgpunch replaces by rename() (metrics_file): only its folder must exist (and be
 * one). */
static void conf_parse_output_file(struct conf_parser *p, const struct conf_key *k,
				   const char *value)
{
	char *display = conf_take_output_path(p, k, value), *dir;
	const char *slash;
	struct stat st;

	if (!display)
		return;
	slash = strrchr(display, '/');
	dir = slash ? strndup(display, slash == display ? 1 : (size_t)(slash - display))
		    : strdup(".");
	if (!dir) {
		p->oom = true;
	} else if (stat(dir, &st) < 0) {
		conf_error(p, p->lineno, "%s: folder '%s' of '%s': %s", k->name, dir, display,
			   strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		conf_error(p, p->lineno, "%s: '%s' of '%s' is not a folder", k->name, dir, display);
	}
	free(dir);
	free(display);
}

/* The state file's folder is the service manager's to make (systemd's StateDirectory=, made
 * before the service starts): it need not exist when the file is checked, so only the name
 * is. A write that fails at stop is logged then. */
static void conf_parse_state_file(struct conf_parser *p, const struct conf_key *k,
				  const char *value)
{
	free(conf_take_output_path(p, k, value));
}

static int conf_key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KEY_LEN);
}

/* One base64 public key per line; blank lines and '#' comments allowed. */
static void conf_parse_authorized_keys(struct conf_parser *p, const struct conf_key *k,
				       const char *value)
{
	struct config_coordinator_role *cr = &p->c->coord;
	char *display, *abs, *line = NULL;
	size_t cap = 0, n = 0;
	uint8_t(*keys)[KEY_LEN] = NULL;
	int lineno = 0;
	FILE *f;

	if (conf_resolve_path(p, value, &display, &abs) < 0)
		return;
	free(cr->authorized_keys_file);
	cr->authorized_keys_file = abs;
	f = fopen(abs, "re");
	if (!f) {
		conf_error(p, p->lineno, "%s: '%s': %s", k->name, display, strerror(errno));
		free(display);
		return;
	}
	errno = 0;
	while (getline(&line, &cap, f) >= 0) {
		char *s = line, *e, *hash;

		lineno++;
		hash = strchr(s, '#');
		if (hash)
			*hash = '\0';
		while (conf_is_space(*s))
			s++;
		e = s + strlen(s);
		while (e > s && conf_is_space(e[-1]))
			*--e = '\0';
		if (!*s)
			continue;
		void *grown = conf_grow(p, keys, n, KEY_LEN);
		if (!grown)
			break;
		keys = grown;
		if (key_from_base64(keys[n], s) < 0)
			conf_error_in(p, p->lineno, display, lineno,
				      "'%s' is not a valid public key (44 characters of base64)",
				      s);
		else
			n++;
	}
	if (ferror(f))
		conf_error(p, p->lineno, "%s: '%s': %s", k->name, display,
			   strerror(errno ? errno : EIO));
	fclose(f);
	free(line);
	free(display);

	/* Sorted and without duplicates, for config_key_authorized()'s bsearch(). */
	if (n > 1)
		qsort(keys, n, KEY_LEN, conf_key_cmp);
	size_t w = 0;
	for (size_t i = 0; i < n; i++)
		if (w == 0 || memcmp(keys[w - 1], keys[i], KEY_LEN))
			memmove(keys[w++], keys[i], KEY_LEN);
	free(cr->authorized_keys);
	cr->authorized_keys = keys;
	cr->n_authorized_keys = w;
}

#define NODE(field) offsetof(struct config, node.field)
#define COORD(field) offsetof(struct config, coord.field)

/*
 * Every key of the format. A key that is not here is an error: an option
 * that is silently ignored is worse than one that is refused.
 */
static const struct conf_key conf_keys[] = {
	{ SEC_NODE, "interface", conf_parse_interface, NODE(interface), KEY_REQUIRED, 0, 0 },
	{ SEC_NODE, "coordinator", conf_parse_coordinator, NODE(coordinators),
	  KEY_REQUIRED | KEY_REPEATABLE, 0, 0 },
	{ SEC_NODE, "backend", conf_parse_backend, NODE(backend), 0, 0, 0 },
	{ SEC_NODE, "keepalive", conf_parse_int_key, NODE(keepalive_s), 0, 1, UINT16_MAX },
	{ SEC_NODE, "relay", conf_parse_bool, NODE(relay), 0, 0, 0 },
	{ SEC_NODE, "control_socket", conf_parse_socket, NODE(control_socket), 0, 0, 0 },
	{ SEC_NODE, "log_level", conf_parse_log_level, offsetof(struct config, log_level), 0, 0,
	  0 },
	{ SEC_NODE, "metrics_file", conf_parse_output_file, offsetof(struct config, metrics_file),
	  0, 0, 0 },

	{ SEC_COORD, "listen", conf_parse_listen, COORD(listen), KEY_REQUIRED | KEY_REPEATABLE, 0,
	  0 },
	{ SEC_COORD, "private_key_file", conf_parse_private_key_file, COORD(private_key_file),
	  KEY_REQUIRED, 0, 0 },
	{ SEC_COORD, "authorized_keys", conf_parse_authorized_keys, COORD(authorized_keys_file), 0,
	  0, 0 },
	{ SEC_COORD, "relay", conf_parse_bool, COORD(relay), 0, 0, 0 },
	{ SEC_COORD, "relay_ports", conf_parse_relay_ports, COORD(relay_port_min), 0, 0, 0 },
	/* Quotas: 0 is no limit, except for the idle timeout, whose relays would never go
	 * (a side that left without a word keeps its two ports); a day bounds that. At most
	 * 32767 relays fit the port numbers anyway. */
	{ SEC_COORD, "relay_max_per_node", conf_parse_int_key, COORD(relay_max_per_node), 0, 0,
	  32767 },
	{ SEC_COORD, "relay_pair_pps", conf_parse_int_key, COORD(relay_pair_pps), 0, 0,
	  UINT32_MAX },
	{ SEC_COORD, "relay_pair_bytes_per_s", conf_parse_int_key, COORD(relay_pair_bytes_per_s), 0,
	  0, UINT32_MAX },
	/* Below WireGuard's 25 s persistent keepalive a relay in use could go idle. */
	{ SEC_COORD, "relay_idle_timeout", conf_parse_int_key, COORD(relay_idle_timeout_s), 0, 30,
	  86400 },
	{ SEC_COORD, "control_socket", conf_parse_socket, COORD(control_socket), 0, 0, 0 },
	{ SEC_COORD, "max_nodes", conf_parse_int_key, COORD(max_nodes), 0, 1,
	  CONF_MAX_NODES_LIMIT },
	{ SEC_COORD, "handshake_cpu", conf_parse_int_key, COORD(handshake_cpu), 0, 1, 100 },
	/* The node clamps what it is told to 60 s - 1 day (link.h): refuse what it would not
	 * follow. */
	{ SEC_COORD, "rekey_interval", conf_parse_int_key, COORD(rekey_interval_s), 0, 60, 65535 },
	{ SEC_COORD, "log_level", conf_parse_log_level, offsetof(struct config, log_level), 0, 0,
	  0 },
	{ SEC_COORD, "metrics_file", conf_parse_output_file, offsetof(struct config, metrics_file),
	  0, 0, 0 },
	{ SEC_COORD, "state_file", conf_parse_state_file, COORD(state_file), 0, 0, 0 },
};

#define CONF_N_KEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

/* ---- the reader and the handler ---- */

static void conf_begin_section(struct conf_parser *p, const char *name)
{
	enum conf_section s = SEC_SKIP, other;

	if (strcmp(name, "node") == 0)
		s = SEC_NODE;
	else if (strcmp(name, "coordinator") == 0)
		s = SEC_COORD;
	p->section = s;
	if (s == SEC_SKIP) {
		conf_error(p, p->lineno, "unknown section [%s]", name);
		return;
	}
	if (p->section_line[s]) {
		conf_error(p, p->lineno, "section [%s] repeats line %d", name, p->section_line[s]);
		return;
	}
	p->section_line[s] = p->lineno;
	other = s == SEC_NODE ? SEC_COORD : SEC_NODE;
	if (p->section_line[other])
		conf_error(p, p->lineno,
			   "[%s] and [%s] (line %d) in one file: a file configures one role", name,
			   conf_section_names[other], p->section_line[other]);
}

/* Judges a stripped line; returns whether inih may see it. */
static bool conf_judge_line(struct conf_parser *p, char *s)
{
	const char *end;

	if (*s == '\0' || *s == ';' || *s == '#')
		return false;
	if (*s == '[') {
		char *close = strchr(s + 1, ']');
		const char *rest;

		if (!close) {
			conf_error(p, p->lineno, "'%s': a section header needs a closing ']'", s);
			p->section = SEC_SKIP;
			return false;
		}
		for (rest = close + 1; conf_is_space(*rest); rest++)
			;
		if (*rest && *rest != ';' && *rest != '#') {
			conf_error(p, p->lineno, "unexpected '%s' after the section header", rest);
			p->section = SEC_SKIP;
			return false;
		}
		*close = '\0';
		conf_begin_section(p, s + 1);
		*close = ']';
		return true;
	}
	end = conf_find_chars_or_comment(s, "=:");
	if (*end != '=' || end == s) {
		conf_error(p, p->lineno, "'%s' is not a [section], a key = value line or a comment",
			   s);
		return false;
	}
	return true;
}

static char *conf_read_line(char *buf, int size, void *stream)
{
	struct conf_parser *p = stream;
	ssize_t n = getline(&p->raw, &p->raw_cap, p->fp);
	char *s;
	size_t len;

	if (n < 0)
		return NULL;
	p->lineno++;
	s = p->raw;
	len = (size_t)n;
	if (memchr(s, '\0', len)) {
		conf_error(p, p->lineno, "the line holds a NUL byte");
		goto skip;
	}
	if (p->lineno == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		s += 3; /* a UTF-8 byte order mark, as some editors write */
		len -= 3;
	}
	while (len > 0 && conf_is_space(s[len - 1]))
		s[--len] = '\0';
	while (conf_is_space(*s)) {
		s++; /* not a continuation line: we have none */
		len--;
	}
	/* inih's line buffer must take it whole, with '\n' and NUL. */
	if (len + 2 > (size_t)size) {
		conf_error(p, p->lineno, "the line is longer than %d characters", size - 2);
		goto skip;
	}
	if (!conf_judge_line(p, s))
		goto skip;
	memcpy(buf, s, len);
	memcpy(buf + len, "\n", 2);
	return buf;
skip:
	memcpy(buf, "\n", 2); /* a blank line: inih does nothing with it */
	return buf;
}

static int conf_on_key(void *user, const char *section, const char *name, const char *value)
{
	struct conf_parser *p = user;
	const struct conf_key *k = NULL;
	size_t i;

	(void)section; /* ours is in p->section: inih's would be cut at 50 bytes */
	if (p->section == SEC_NONE) {
		conf_error(p, p->lineno, "key '%s' is outside a section", name);
		return 1;
	}
	if (p->section == SEC_SKIP)
		return 1;
	for (i = 0; i < CONF_N_KEYS; i++) {
		if (conf_keys[i].section == p->section && strcmp(conf_keys[i].name, name) == 0) {
			k = &conf_keys[i];
			break;
		}
	}
	if (!k) {
		conf_error(p, p->lineno, "unknown key '%s' in [%s]", name,
			   conf_section_names[p->section]);
		return 1;
	}
	if (p->key_line[i] && !(k->flags & KEY_REPEATABLE)) {
		conf_error(p, p->lineno, "%s: repeated (first set at line %d)", name,
			   p->key_line[i]);
		return 1;
	}
	/* Set even when the value is bad: one mistake, one message (not also "missing"). */
	if (!p->key_line[i])
		p->key_line[i] = p->lineno;
	if (!*value) {
		conf_error(p, p->lineno, "%s: missing value", name);
		return 1;
	}
	k->parse(p, k, value);
	return 1; /* go on: every mistake is reported, not only the first */
}

/* ---- after the last line ---- */

static void conf_finish(struct conf_parser *p)
{
	struct config *c = p->c;
	struct config_coordinator_role *cr = &c->coord;

	if (!p->section_line[SEC_NODE] && !p->section_line[SEC_COORD]) {
		conf_error(p, 1, "no [node] or [coordinator] section");
		return;
	}
	for (size_t i = 0; i < CONF_N_KEYS; i++) {
		const struct conf_key *k = &conf_keys[i];
		int line = p->section_line[k->section];

		if (line && (k->flags & KEY_REQUIRED) && !p->key_line[i])
			conf_error(p, line, "[%s]: missing required key '%s'",
				   conf_section_names[k->section], k->name);
	}
	if (p->section_line[SEC_NODE] && p->section_line[SEC_COORD])
		return; /* reported at the second header */

	if (p->section_line[SEC_NODE]) {
		c->role = CONFIG_ROLE_NODE;
		if (!c->node.control_socket && c->node.interface[0] &&
		    asprintf(&c->node.control_socket, CONFIG_RUN_DIR "/%s.sock",
			     c->node.interface) < 0) {
			c->node.control_socket = NULL;
			p->oom = true;
		}
		return;
	}

	c->role = CONFIG_ROLE_COORDINATOR;
	if (!cr->control_socket)
		cr->control_socket = conf_strdup(p, CONFIG_RUN_DIR "/coordinator.sock");
	/* Relay port pairs and the session/probe ports share one host: they must not overlap. */
	for (size_t i = 0; cr->relay && p->relay_ports_line >= 0 && i < cr->n_listen; i++) {
		unsigned int port = addr_port(&cr->listen[i]);

		if (port <= cr->relay_port_max && port + 1 >= cr->relay_port_min)
			conf_error(p, p->listen_lines[i],
				   "listen: port %u or %u lies in relay_ports %u-%u%s", port,
				   port + 1, cr->relay_port_min, cr->relay_port_max,
				   p->relay_ports_line ? "" : " (the default)");
	}
}

static void conf_set_defaults(struct config *c)
{
	c->log_level = LOG_LEVEL_INFO;
	c->node.backend = CONFIG_BACKEND_AUTO;
	c->node.keepalive_s = CONFIG_DEFAULT_KEEPALIVE_S;
	c->node.relay = true;
	c->coord.relay = true;
	c->coord.relay_port_min = CONFIG_DEFAULT_RELAY_PORT_MIN;
	c->coord.relay_port_max = CONFIG_DEFAULT_RELAY_PORT_MAX;
	c->coord.relay_max_per_node = CONFIG_DEFAULT_RELAY_MAX_PER_NODE;
	c->coord.relay_pair_pps = CONFIG_DEFAULT_RELAY_PAIR_PPS;
	c->coord.relay_pair_bytes_per_s = CONFIG_DEFAULT_RELAY_PAIR_BYTES_PER_S;
	c->coord.relay_idle_timeout_s = CONFIG_DEFAULT_RELAY_IDLE_TIMEOUT_S;
	c->coord.max_nodes = CONFIG_DEFAULT_MAX_NODES;
	c->coord.handshake_cpu = CONFIG_DEFAULT_HANDSHAKE_CPU;
	c->coord.rekey_interval_s = CONFIG_DEFAULT_REKEY_INTERVAL_S;
}

int config_load(const char *path, FILE *errors, struct config **out)
{
	struct conf_parser p = { .path = path };
	const char *slash;
	int r;

	*out = NULL;
	p.fp = fopen(path, "re");
	if (!p.fp) {
		r = -errno;
		fprintf(errors, "%s: %s\n", path, strerror(-r));
		return r;
	}
	slash = strrchr(path, '/');
	p.dir = strndup(path, slash ? (size_t)(slash - path + 1) : 0);
	p.c = calloc(1, sizeof(*p.c));
	p.key_line = calloc(CONF_N_KEYS, sizeof(*p.key_line));
	if (!p.dir || !p.c || !p.key_line)
		goto oom;
	p.c->path = strdup(path);
	if (!p.c->path)
		goto oom;
	conf_set_defaults(p.c);

	r = ini_parse_stream(conf_read_line, &p, conf_on_key, &p);
	if (r == -2)
		p.oom = true;
	if (ferror(p.fp)) {
		r = errno ? -errno : -EIO;
		fprintf(errors, "%s: %s\n", path, strerror(-r));
		goto out;
	}
	conf_finish(&p);
	if (p.oom)
		goto oom;

	if (p.n_errs > 1)
		qsort(p.errs, p.n_errs, sizeof(*p.errs), conf_error_cmp);
	for (size_t i = 0; i < p.n_errs; i++)
		fprintf(errors, "%s\n", p.errs[i].msg);
	r = p.n_errs ? -EINVAL : 0;
	if (r == 0) {
		*out = p.c;
		p.c = NULL;
	}
	goto out;
oom:
	fprintf(errors, "%s: %s\n", path, strerror(ENOMEM));
	r = -ENOMEM;
out:
	for (size_t i = 0; i < p.n_errs; i++)
		free(p.errs[i].msg);
	free(p.errs);
	free(p.raw);
	free(p.key_line);
	free(p.coordinator_lines);
	free(p.listen_lines);
	free(p.dir);
	config_free(p.c);
	fclose(p.fp);
	return r;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->node.n_coordinators; i++)
		free(c->node.coordinators[i].host);
	free(c->node.coordinators);
	free(c->node.control_socket);
	free(c->coord.listen);
	free(c->coord.private_key_file);
	free(c->coord.authorized_keys_file);
	free(c->coord.authorized_keys);
	free(c->coord.control_socket);
	free(c->coord.state_file);
	sodium_memzero(c->coord.private_key, sizeof(c->coord.private_key));
	free(c->metrics_file);
	free(c->path);
	free(c);
}

static const char *conf_bool_name(bool b)
{
	return b ? "yes" : "no";
}

void config_print(const struct config *c, FILE *out)
{
	static const char *const backends[] = {
		[CONFIG_BACKEND_AUTO] = "auto",
		[CONFIG_BACKEND_KERNEL] = "kernel",
		[CONFIG_BACKEND_USERSPACE] = "userspace",
	};
	char b64[KEY_B64_LEN + 1], buf[ADDR_STRLEN];

	if (c->role == CONFIG_ROLE_NODE) {
		const struct config_node *n = &c->node;

		fprintf(out, "[node]\n");
		fprintf(out, "interface = %s\n", n->interface);
		for (size_t i = 0; i < n->n_coordinators; i++) {
			const struct config_coordinator *co = &n->coordinators[i];
			bool v6 = strchr(co->host, ':') != NULL;

			key_to_base64(b64, co->public_key);
			fprintf(out, "coordinator = %s%s%s:%u %s\n", v6 ? "[" : "", co->host,
				v6 ? "]" : "", co->port, b64);
		}
		fprintf(out, "backend = %s\n", backends[n->backend]);
		fprintf(out, "keepalive = %u\n", n->keepalive_s);
		fprintf(out, "relay = %s\n", conf_bool_name(n->relay));
		fprintf(out, "control_socket = %s\n", n->control_socket);
		fprintf(out, "log_level = %s\n", log_level_name(c->log_level));
		if (c->metrics_file)
			fprintf(out, "metrics_file = %s\n", c->metrics_file);
		return;
	}
	if (c->role != CONFIG_ROLE_COORDINATOR)
		return;

	const struct config_coordinator_role *cr = &c->coord;

	fprintf(out, "[coordinator]\n");
	for (size_t i = 0; i < cr->n_listen; i++)
		fprintf(out, "listen = %s\n", addr_format(&cr->listen[i], buf));
	fprintf(out, "private_key_file = %s\n", cr->private_key_file);
	key_to_base64(b64, cr->public_key);
	/* The public key is what node configs need on their coordinator lines. */
	fprintf(out, "; public key: %s\n", b64);
	if (cr->authorized_keys_file)
		fprintf(out, "authorized_keys = %s\n", cr->authorized_keys_file);
	fprintf(out, "relay = %s\n", conf_bool_name(cr->relay));
	fprintf(out, "relay_ports = %u-%u\n", cr->relay_port_min, cr->relay_port_max);
	fprintf(out, "relay_max_per_node = %u\n", cr->relay_max_per_node);
	fprintf(out, "relay_pair_pps = %u\n", cr->relay_pair_pps);
	fprintf(out, "relay_pair_bytes_per_s = %u\n", cr->relay_pair_bytes_per_s);
	fprintf(out, "relay_idle_timeout = %u\n", cr->relay_idle_timeout_s);
	fprintf(out, "control_socket = %s\n", cr->control_socket);
	fprintf(out, "max_nodes = %u\n", cr->max_nodes);
	fprintf(out, "handshake_cpu = %u\n", cr->handshake_cpu);
	fprintf(out, "rekey_interval = %u\n", cr->rekey_interval_s);
	if (cr->state_file)
		fprintf(out, "state_file = %s\n", cr->state_file);
	fprintf(out, "log_level = %s\n", log_level_name(c->log_level));
	if (c->metrics_file)
		fprintf(out, "metrics_file = %s\n", c->metrics_file);
}

bool config_key_authorized(const struct config *c, const uint8_t key[KEY_LEN])
{
	if (!c->coord.authorized_keys_file)
		return true;
	return c->coord.n_authorized_keys &&
	       bsearch(key, c->coord.authorized_keys, c->coord.n_authorized_keys, KEY_LEN,
		       conf_key_cmp) != NULL;
}

const char *config_control_socket(const struct config *c)
{
	return c->role == CONFIG_ROLE_COORDINATOR ? c->coord.control_socket
						  : c->node.control_socket;
}
