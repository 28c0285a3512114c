/* SPDX-License-Identifier: MIT */
#include "wgpunch/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tap.h"

/* RFC 7748 section 6.1 public keys: Alice's and Bob's. */
#define PUB_A "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
#define PUB_B "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="

static char tmpdir[] = "/tmp/wgpunch-test-config-XXXXXX";
static char made[32][300]; /* files to remove at the end */
static size_t n_made;

static const char *tmp_path(const char *name)
{
	static char path[300];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static const char *write_file(const char *name, const char *content, mode_t mode)
{
	const char *path = tmp_path(name);
	FILE *f = fopen(path, "w");

	if (!f) {
		printf("# cannot create %s\n", path);
		return path;
	}
	fputs(content, f);
	fclose(f);
	chmod(path, mode);
	for (size_t i = 0; i < n_made; i++)
		if (strcmp(made[i], path) == 0)
			return path;
	if (n_made < sizeof(made) / sizeof(made[0]))
		snprintf(made[n_made++], sizeof(made[0]), "%s", path);
	return path;
}

/* A fresh private key in a 0600 file (keys are never committed); its public key in pub. */
static void make_key_file(const char *name, uint8_t priv[KEY_LEN], uint8_t pub[KEY_LEN])
{
	char b64[KEY_B64_LEN + 2];

	key_generate_private(priv);
	key_public_from_private(pub, priv);
	key_to_base64(b64, priv);
	strcat(b64, "\n");
	write_file(name, b64, 0600);
}

/* Loads path; the error text, if any, goes to *errors (caller frees). */
static int load(const char *path, struct config **out, char **errors)
{
	size_t len = 0;
	FILE *f = open_memstream(errors, &len);
	int r = config_load(path, f, out);

	fclose(f);
	if (**errors)
		printf("# %s", *errors);
	return r;
}

static int load_quiet(const char *path, struct config **out, char **errors)
{
	size_t len = 0;
	FILE *f = open_memstream(errors, &len);
	int r = config_load(path, f, out);

	fclose(f);
	return r;
}

static void test_config_node_every_field(void)
{
	const char *path =
		write_file("node.ini",
			   "# a node\n"
			   "[node]\n"
			   "interface = wgtest0\n"
			   "  coordinator = 203.0.113.1:51900 " PUB_A " ; indented, comment\n"
			   "coordinator=[2001:db8::1]:51901 " PUB_B "\n"
			   "coordinator = coord.example.com:7 " PUB_A "\n"
			   "backend = UserSpace\n"
			   "keepalive = 65535\n"
			   "relay = Off\n"
			   "control_socket = /run/test/node.sock\n"
			   "log_level = debug\n",
			   0644);
	struct config *c = NULL;
	char *errors = NULL;
	uint8_t a[KEY_LEN], b[KEY_LEN];

	key_from_base64(a, PUB_A);
	key_from_base64(b, PUB_B);
	CHECK_EQ_INT(load(path, &c, &errors), 0);
	CHECK(errors && !*errors);
	free(errors);
	if (!c)
		return;
	CHECK_EQ_INT(c->role, CONFIG_ROLE_NODE);
	CHECK(strcmp(c->path, path) == 0);
	CHECK(strcmp(c->node.interface, "wgtest0") == 0);
	CHECK_EQ_INT(c->node.n_coordinators, 3);
	if (c->node.n_coordinators == 3) {
		CHECK(strcmp(c->node.coordinators[0].host, "203.0.113.1") == 0);
		CHECK_EQ_INT(c->node.coordinators[0].port, 51900);
		CHECK(memcmp(c->node.coordinators[0].public_key, a, KEY_LEN) == 0);
		CHECK(strcmp(c->node.coordinators[1].host, "2001:db8::1") == 0);
		CHECK_EQ_INT(c->node.coordinators[1].port, 51901);
		CHECK(memcmp(c->node.coordinators[1].public_key, b, KEY_LEN) == 0);
		CHECK(strcmp(c->node.coordinators[2].host, "coord.example.com") == 0);
		CHECK_EQ_INT(c->node.coordinators[2].port, 7);
	}
	CHECK_EQ_INT(c->node.backend, CONFIG_BACKEND_USERSPACE);
	CHECK_EQ_INT(c->node.keepalive_s, 65535);
	CHECK(!c->node.relay);
	CHECK(strcmp(c->node.control_socket, "/run/test/node.sock") == 0);
	CHECK(strcmp(config_control_socket(c), "/run/test/node.sock") == 0);
	CHECK_EQ_INT(c->log_level, LOG_LEVEL_DEBUG);
	config_free(c);
}

static void test_config_node_defaults(void)
{
	const char *path = write_file(
		"node-min.ini",
		"[node]\ninterface = wg7\ncoordinator = 203.0.113.1:51900 " PUB_A "\n", 0644);
	struct config *c = NULL;
	char *errors = NULL;

	CHECK_EQ_INT(load(path, &c, &errors), 0);
	free(errors);
	if (!c)
		return;
	CHECK_EQ_INT(c->node.backend, CONFIG_BACKEND_AUTO);
	CHECK_EQ_INT(c->node.keepalive_s, CONFIG_DEFAULT_KEEPALIVE_S);
	CHECK_EQ_INT(c->node.keepalive_s, 25);
	CHECK(c->node.relay);
	CHECK(strcmp(c->node.control_socket, "/run/wgpunch/wg7.sock") == 0);
	CHECK_EQ_INT(c->log_level, LOG_LEVEL_INFO);
	config_free(c);
}

static void test_config_booleans(void)
{
	static const struct {
		const char *text;
		bool value;
	} cases[] = { { "yes", true }, { "no", false },  { "TRUE", true }, { "false", false },
		      { "On", true },  { "off", false }, { "1", true },    { "0", false } };
	char text[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c = NULL;
		char *errors = NULL;
		const char *path;

		snprintf(text, sizeof(text),
			 "[node]\ninterface = wg0\ncoordinator = 203.0.113.1:1 %s\nrelay = %s\n",
			 PUB_A, cases[i].text);
		path = write_file("bool.ini", text, 0644);
		CHECK_EQ_INT(load(path, &c, &errors), 0);
		free(errors);
		if (c)
			CHECK_EQ_INT(c->node.relay, cases[i].value);
		config_free(c);
	}
}

static void test_config_coordinator_every_field(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN], a[KEY_LEN], b[KEY_LEN], other[KEY_LEN];
	struct config *c = NULL;
	char *errors = NULL, want[400];
	const char *path;

	make_key_file("coordinator.key", priv, pub);
	write_file("nodes.keys", "# nodes\n\n" PUB_B "\n  " PUB_A "  # alice\n" PUB_B "\n", 0644);
	path = write_file("coordinator.ini",
			  "[coordinator]\n"
			  "listen = 203.0.113.5:51900\n"
			  "listen = [2001:db8::5]:51900\n"
			  "private_key_file = coordinator.key\n"
			  "authorized_keys = nodes.keys\n"
			  "relay = no\n"
			  "relay_ports = 40000-40009\n"
			  "control_socket = coord.sock\n"
			  "max_nodes = 16777216\n"
			  "log_level = warn\n",
			  0644);
	CHECK_EQ_INT(load(path, &c, &errors), 0);
	free(errors);
	if (!c)
		return;
	CHECK_EQ_INT(c->role, CONFIG_ROLE_COORDINATOR);
	CHECK_EQ_INT(c->coord.n_listen, 2);
	if (c->coord.n_listen == 2) {
		char buf[ADDR_STRLEN];

		CHECK(strcmp(addr_format(&c->coord.listen[0], buf), "203.0.113.5:51900") == 0);
		CHECK(strcmp(addr_format(&c->coord.listen[1], buf), "[2001:db8::5]:51900") == 0);
	}
	/* Relative paths are relative to the config file, and stored absolute. */
	CHECK(strcmp(c->coord.private_key_file, tmp_path("coordinator.key")) == 0);
	CHECK(memcmp(c->coord.private_key, priv, KEY_LEN) == 0);
	CHECK(memcmp(c->coord.public_key, pub, KEY_LEN) == 0);
	CHECK(strcmp(c->coord.authorized_keys_file, tmp_path("nodes.keys")) == 0);
	CHECK_EQ_INT(c->coord.n_authorized_keys, 2); /* the repeated key counts once */
	key_from_base64(a, PUB_A);
	key_from_base64(b, PUB_B);
	CHECK(config_key_authorized(c, a));
	CHECK(config_key_authorized(c, b));
	CHECK(!config_key_authorized(c, pub));
	memcpy(other, a, KEY_LEN);
	other[31] ^= 0x01;
	CHECK(!config_key_authorized(c, other));
	CHECK(!c->coord.relay);
	CHECK_EQ_INT(c->coord.relay_port_min, 40000);
	CHECK_EQ_INT(c->coord.relay_port_max, 40009);
	snprintf(want, sizeof(want), "%s", tmp_path("coord.sock"));
	CHECK(strcmp(c->coord.control_socket, want) == 0);
	CHECK(strcmp(config_control_socket(c), want) == 0);
	CHECK_EQ_INT(c->coord.max_nodes, 16777216);
	CHECK_EQ_INT(c->log_level, LOG_LEVEL_WARN);
	config_free(c);
}

static void test_config_coordinator_defaults(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	struct config *c = NULL;
	char *errors = NULL;
	const char *path;

	make_key_file("coordinator.key", priv, pub);
	path = write_file("coordinator-min.ini",
			  "[coordinator]\nlisten = 0.0.0.0:51900\nprivate_key_file = "
			  "coordinator.key\n",
			  0644);
	CHECK_EQ_INT(load(path, &c, &errors), 0);
	free(errors);
	if (!c)
		return;
	CHECK(c->coord.relay);
	CHECK_EQ_INT(c->coord.relay_port_min, CONFIG_DEFAULT_RELAY_PORT_MIN);
	CHECK_EQ_INT(c->coord.relay_port_max, CONFIG_DEFAULT_RELAY_PORT_MAX);
	CHECK_EQ_INT(c->coord.relay_port_min, 52000);
	CHECK_EQ_INT(c->coord.relay_port_max, 52999);
	CHECK(strcmp(c->coord.control_socket, "/run/wgpunch/coordinator.sock") == 0);
	CHECK_EQ_INT(c->coord.max_nodes, 1048576);
	CHECK_EQ_INT(c->coord.relay_max_per_node, 16);
	CHECK_EQ_INT(c->coord.relay_pair_pps, 100000);
	CHECK_EQ_INT(c->coord.relay_pair_bytes_per_s, 100u << 20);
	CHECK_EQ_INT(c->coord.relay_idle_timeout_s, 180);
	CHECK(c->coord.authorized_keys_file == NULL);
	CHECK(config_key_authorized(c, pub)); /* no authorized_keys: any key */
	CHECK_EQ_INT(c->log_level, LOG_LEVEL_INFO);
	config_free(c);
}

static bool config_same(const struct config *x, const struct config *y)
{
	bool same = x->role == y->role && x->log_level == y->log_level;

	if (!same)
		return false;
	if (x->role == CONFIG_ROLE_NODE) {
		const struct config_node *a = &x->node, *b = &y->node;

		same = !strcmp(a->interface, b->interface) &&
		       a->n_coordinators == b->n_coordinators && a->backend == b->backend &&
		       a->keepalive_s == b->keepalive_s && a->relay == b->relay &&
		       !strcmp(a->control_socket, b->control_socket);
		for (size_t i = 0; same && i < a->n_coordinators; i++)
			same = !strcmp(a->coordinators[i].host, b->coordinators[i].host) &&
			       a->coordinators[i].port == b->coordinators[i].port &&
			       !memcmp(a->coordinators[i].public_key, b->coordinators[i].public_key,
				       KEY_LEN);
		return same;
	}
	const struct config_coordinator_role *a = &x->coord, *b = &y->coord;

	same = a->n_listen == b->n_listen && !strcmp(a->private_key_file, b->private_key_file) &&
	       !memcmp(a->private_key, b->private_key, KEY_LEN) &&
	       !memcmp(a->public_key, b->public_key, KEY_LEN) &&
	       !a->authorized_keys_file == !b->authorized_keys_file &&
	       a->n_authorized_keys == b->n_authorized_keys && a->relay == b->relay &&
	       a->relay_port_min == b->relay_port_min && a->relay_port_max == b->relay_port_max &&
	       !strcmp(a->control_socket, b->control_socket) && a->max_nodes == b->max_nodes;
	for (size_t i = 0; same && i < a->n_listen; i++)
		same = addr_equal(&a->listen[i], &b->listen[i]);
	if (same && a->authorized_keys_file)
		same = !strcmp(a->authorized_keys_file, b->authorized_keys_file) &&
		       !memcmp(a->authorized_keys, b->authorized_keys,
			       a->n_authorized_keys * KEY_LEN);
	return same;
}

/* config_print's output, loaded again from another folder, is the same config. */
static void check_print_reparses(const char *path)
{
	struct config *c = NULL, *again = NULL;
	char *errors = NULL, *text = NULL, *text2 = NULL;
	size_t len = 0, len2 = 0;
	FILE *f;

	CHECK_EQ_INT(load(path, &c, &errors), 0);
	free(errors);
	if (!c)
		return;
	f = open_memstream(&text, &len);
	config_print(c, f);
	fclose(f);
	mkdir(tmp_path("printed"), 0700);
	path = write_file("printed/again.ini", text, 0644);
	CHECK_EQ_INT(load(path, &again, &errors), 0);
	free(errors);
	if (again) {
		CHECK(config_same(c, again));
		f = open_memstream(&text2, &len2);
		config_print(again, f);
		fclose(f);
		CHECK(strcmp(text, text2) == 0); /* normalised: printing is a fixed point */
		free(text2);
	}
	free(text);
	config_free(again);
	config_free(c);
}

static void test_config_print_reparses(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN];

	check_print_reparses(write_file("p-node.ini",
					"[node]\n"
					"interface = wg0\n"
					"coordinator = [2001:db8::1]:51901 " PUB_B "\n"
					"coordinator = coord.example.com:51900 " PUB_A "\n"
					"keepalive = 10\nrelay = off\nbackend = kernel\n",
					0644));
	check_print_reparses(write_file("p-node-min.ini",
					"[node]\ninterface = wg0\n"
					"coordinator = 203.0.113.1:51900 " PUB_A "\n",
					0644));
	make_key_file("coordinator.key", priv, pub);
	write_file("nodes.keys", PUB_A "\n" PUB_B "\n", 0644);
	check_print_reparses(
		write_file("p-coord.ini",
			   "[coordinator]\n"
			   "listen = 0.0.0.0:51900\nlisten = [::]:51900\n"
			   "private_key_file = coordinator.key\n"
			   "authorized_keys = nodes.keys\n"
			   "relay_ports = 30000-30100\nmax_nodes = 5\nlog_level = error\n"
			   "relay_max_per_node = 3\nrelay_pair_pps = 0\n"
			   "relay_pair_bytes_per_s = 12345\nrelay_idle_timeout = 600\n",
			   0644));
	check_print_reparses(write_file("p-coord-min.ini",
					"[coordinator]\nlisten = 203.0.113.9:4000\n"
					"private_key_file = "
					"coordinator.key\n",
					0644));
}

static void test_config_print_hides_private_key(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	char priv_b64[KEY_B64_LEN + 1], pub_b64[KEY_B64_LEN + 1];
	struct config *c = NULL;
	char *errors = NULL, *text = NULL;
	size_t len = 0;
	FILE *f;

	make_key_file("coordinator.key", priv, pub);
	key_to_base64(priv_b64, priv);
	key_to_base64(pub_b64, pub);
	CHECK_EQ_INT(load(write_file("hide.ini",
				     "[coordinator]\nlisten = 203.0.113.9:4000\n"
				     "private_key_file = coordinator.key\n",
				     0644),
			  &c, &errors),
		     0);
	free(errors);
	if (!c)
		return;
	f = open_memstream(&text, &len);
	config_print(c, f);
	fclose(f);
	CHECK(strstr(text, priv_b64) == NULL);
	CHECK(strstr(text, pub_b64) != NULL);
	CHECK(strstr(text, tmp_path("coordinator.key")) != NULL);
	free(text);
	config_free(c);
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Every mistake is reported, each as FILE:LINE: with its own line. */
static void test_config_reports_every_mistake(void)
{
	const char *path = write_file("bad.ini",
				      "[node]\n"                         /* 1 */
				      "interface = wg/0\n"               /* 2 */
				      "keepalive = 0\n"                  /* 3 */
				      "relay = maybe\n"                  /* 4 */
				      "backend = magic\n"                /* 5 */
				      "frobnicate = 1\n"                 /* 6 */
				      "this is not a line\n"             /* 7 */
				      "keepalive = 5\n"                  /* 8 */
				      "    coordinator = 203.0.113.1\n", /* 9 */
				      0644);
	struct config *c = (struct config *)&c; /* must be reset to NULL */
	char *errors = NULL, want[400];

	CHECK_EQ_INT(load_quiet(path, &c, &errors), -EINVAL);
	CHECK(c == NULL);
	CHECK_EQ_INT(count_lines(errors), 9);
	static const int lines[] = { 2, 3, 4, 5, 6, 7, 8, 9, 9 };
	const char *at = errors;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		snprintf(want, sizeof(want), "%s:%d: ", path, lines[i]);
		CHECK(strncmp(at, want, strlen(want)) == 0);
		at = strchr(at, '\n');
		if (!at)
			break;
		at++;
	}
	CHECK(strstr(errors, "keepalive: '0' is out of range (1-65535)") != NULL);
	CHECK(strstr(errors, "unknown key 'frobnicate' in [node]") != NULL);
	CHECK(strstr(errors, "keepalive: repeated (first set at line 3)") != NULL);
	free(errors);
}

/* The relay quotas: values, 0 as no limit, and each bad value at its FILE:LINE. */
static void test_config_relay_quotas(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	struct config *c = NULL;
	char *errors = NULL, want[400];
	const char *path;

	make_key_file("coordinator.key", priv, pub);
	path = write_file("quotas.ini",
			  "[coordinator]\nlisten = 0.0.0.0:51900\n"
			  "private_key_file = coordinator.key\n"
			  "relay_max_per_node = 0\n"
			  "relay_pair_pps = 4294967295\n"
			  "relay_pair_bytes_per_s = 1000\n"
			  "relay_idle_timeout = 30\n",
			  0644);
	CHECK_EQ_INT(load(path, &c, &errors), 0);
	free(errors);
	errors = NULL;
	if (c) {
		CHECK_EQ_INT(c->coord.relay_max_per_node, 0);
		CHECK(c->coord.relay_pair_pps == UINT32_MAX);
		CHECK_EQ_INT(c->coord.relay_pair_bytes_per_s, 1000);
		CHECK_EQ_INT(c->coord.relay_idle_timeout_s, 30);
		config_free(c);
	}
	path = write_file("quotas-bad.ini",
			  "[coordinator]\nlisten = 0.0.0.0:51900\n" /* 1, 2 */
			  "private_key_file = coordinator.key\n"    /* 3 */
			  "relay_max_per_node = 32768\n"            /* 4 */
			  "relay_pair_pps = -1\n"                   /* 5 */
			  "relay_pair_bytes_per_s = 4294967296\n"   /* 6 */
			  "relay_idle_timeout = 29\n"               /* 7 */
			  "relay_idle_timeout = 86401\n",           /* 8 */
			  0644);
	c = (struct config *)&c;
	CHECK_EQ_INT(load_quiet(path, &c, &errors), -EINVAL);
	CHECK(c == NULL);
	CHECK_EQ_INT(count_lines(errors), 5);
	snprintf(want, sizeof(want), "%s:4: relay_max_per_node: '32768' is out of range (0-32767)",
		 path);
	CHECK(strstr(errors, want) != NULL);
	snprintf(want, sizeof(want), "%s:5: relay_pair_pps: '-1' is not a number", path);
	CHECK(strstr(errors, want) != NULL);
	snprintf(want, sizeof(want),
		 "%s:6: relay_pair_bytes_per_s: '4294967296' is out of range (0-4294967295)", path);
	CHECK(strstr(errors, want) != NULL);
	snprintf(want, sizeof(want), "%s:7: relay_idle_timeout: '29' is out of range (30-86400)",
		 path);
	CHECK(strstr(errors, want) != NULL);
	snprintf(want, sizeof(want), "%s:8: relay_idle_timeout: repeated (first set at line 7)",
		 path);
	CHECK(strstr(errors, want) != NULL);
	free(errors);
}

static void test_config_missing_required_at_section_line(void)
{
	const char *path = write_file("req.ini", "; nothing yet\n\n[node]\nrelay = yes\n", 0644);
	struct config *c = NULL;
	char *errors = NULL, want[400];

	CHECK_EQ_INT(load_quiet(path, &c, &errors), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:3: [node]: missing required key 'interface'\n"
		 "%s:3: [node]: missing required key 'coordinator'\n",
		 path, path);
	CHECK(strcmp(errors, want) == 0);
	free(errors);
}

static void test_config_unreadable_file(void)
{
	struct config *c = NULL;
	char *errors = NULL, want[400];

	snprintf(want, sizeof(want), "%s: No such file or directory\n", tmp_path("absent.ini"));
	CHECK_EQ_INT(load_quiet(tmp_path("absent.ini"), &c, &errors), -ENOENT);
	CHECK(strcmp(errors, want) == 0);
	CHECK(c == NULL);
	free(errors);
}

static void test_config_relative_to_config_folder(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	struct config *c = NULL;
	char *errors = NULL, cwd[300];

	mkdir(tmp_path("sub"), 0700);
	make_key_file("sub/coordinator.key", priv, pub);
	write_file("sub/rel.ini",
		   "[coordinator]\nlisten = 203.0.113.9:4000\nprivate_key_file = coordinator.key\n",
		   0644);
	if (!getcwd(cwd, sizeof(cwd)) || chdir(tmpdir) < 0) {
		CHECK(false);
		return;
	}
	CHECK_EQ_INT(load("sub/rel.ini", &c, &errors), 0);
	free(errors);
	if (c) {
		CHECK(strcmp(c->path, "sub/rel.ini") == 0);
		CHECK(strcmp(c->coord.private_key_file, tmp_path("sub/coordinator.key")) == 0);
		CHECK(memcmp(c->coord.public_key, pub, KEY_LEN) == 0);
	}
	config_free(c);
	CHECK_EQ_INT(chdir(cwd), 0);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	TAP_RUN(test_config_node_every_field);
	TAP_RUN(test_config_node_defaults);
	TAP_RUN(test_config_booleans);
	TAP_RUN(test_config_coordinator_every_field);
	TAP_RUN(test_config_coordinator_defaults);
	TAP_RUN(test_config_relay_quotas);
	TAP_RUN(test_config_print_reparses);
	TAP_RUN(test_config_print_hides_private_key);
	TAP_RUN(test_config_reports_every_mistake);
	TAP_RUN(test_config_missing_required_at_section_line);
	TAP_RUN(test_config_unreadable_file);
	TAP_RUN(test_config_relative_to_config_folder);

	while (n_made > 0)
		unlink(made[--n_made]);
	rmdir(tmp_path("printed"));
	rmdir(tmp_path("sub"));
	rmdir(tmpdir);
	return tap_done();
}
