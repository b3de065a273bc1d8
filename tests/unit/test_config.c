// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Unit tests of the daemon's configuration: what a good file means, the exact message for
 * each bad one, flags laid over the file, and the checks against the system (with a fixed
 * list of interfaces, so the test does not depend on the machine's).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include <sluice/abi.h>

#include "config.h"

static void test_good(void)
{
	const char *text = "# comment\n"
			   "interface eth0   # trailing comment\n"
			   "interface ib*, bond0.100\n"
			   "interface en[ps]*\tveth0\n"
			   "xdp ens1f0\n"
			   "mode audit\n"
			   "policy /etc/sluice/dtn.conf\n"
			   "metrics [::1]:9100\n"
			   "events stdout, /var/log/sluice/events.jsonl\n"
			   "events syslog\n"
			   "pin-dir /sys/fs/bpf/sl\n"
			   "state-dir /var/lib/sl\n";
	char err[CONFIG_ERROR_MAX] = "";
	struct daemon_config c;

	CHECK(config_parse_text("s.conf", text, &c, err) == 0, "parse failed: %s", err);
	CHECK_EQ_U64(c.ifaces.n, 5, "interfaces");
	CHECK(strcmp(c.ifaces.items[1].text, "ib*") == 0 && c.ifaces.items[1].line == 3 &&
		      c.ifaces.items[1].col == 11,
	      "ib* at 3:11, got %s at %u:%u", c.ifaces.items[1].text, c.ifaces.items[1].line,
	      c.ifaces.items[1].col);
	CHECK(strcmp(c.ifaces.items[4].text, "veth0") == 0, "tab separates: %s",
	      c.ifaces.items[4].text);
	CHECK(c.xdp.n == 1 && strcmp(c.xdp.items[0].text, "ens1f0") == 0, "xdp");
	CHECK(c.mode == SLUICE_MODE_AUDIT, "mode audit");
	CHECK(strcmp(c.policy.text, "/etc/sluice/dtn.conf") == 0, "policy");
	CHECK(strcmp(c.metrics.text, "[::1]:9100") == 0, "metrics");
	CHECK(c.events.n == 3 && strcmp(c.events.items[2].text, "syslog") == 0,
	      "events accumulate over lines and replace the default: %zu", c.events.n);
	CHECK(strcmp(c.pin_dir.text, "/sys/fs/bpf/sl") == 0 &&
		      strcmp(c.state_dir.text, "/var/lib/sl") == 0,
	      "directories");

	/* Defaults: nothing set but what the daemon needs to know. */
	CHECK(config_parse_text("empty.conf", "\n# nothing\n", &c, err) == 0, "empty: %s", err);
	CHECK(c.ifaces.n == 0 && c.mode == -1 && strcmp(c.policy.text, CONFIG_POLICY_DEFAULT) == 0 &&
		      strcmp(c.metrics.text, CONFIG_METRICS_DEFAULT) == 0 && c.events.n == 1 &&
		      strcmp(c.pin_dir.text, "/sys/fs/bpf/sluice") == 0,
	      "defaults");
	CHECK(config_parse_text("m.conf", "metrics off\nevents off\n", &c, err) == 0, "off: %s",
	      err);

	CHECK(config_is_pattern("eth*") && config_is_pattern("en?0") && config_is_pattern("ib[01]") &&
		      !config_is_pattern("eth0.100"),
	      "patterns");
	CHECK(config_parse_text("s.conf", text, &c, err) == 0, "reparse");
	CHECK(config_match(&c.ifaces, "ib3") == &c.ifaces.items[1], "ib3 matches ib*");
	CHECK(config_match(&c.ifaces, "enp3s0") == &c.ifaces.items[3], "enp3s0 matches en[ps]*");
	CHECK(config_match(&c.ifaces, "eth1") == NULL, "eth1 matches nothing");
}

/* Each bad file gives exactly this message: the line, the column, what is wrong. */
static void test_bad(void)
{
	static const struct {
		const char *text, *message;
	} cases[] = {
		{ "interface eth0\ninterfce eth1\n",
		  "b.conf:2:1: unknown key 'interfce' (did you mean 'interface'?)" },
		{ "pindir /sys/fs/bpf/x\n", "b.conf:1:1: unknown key 'pindir' (did you mean 'pin-dir'?)" },
		{ "  interfaces eth1\n", "b.conf:1:3: unknown key 'interfaces' (did you mean 'interface'?)" },
		{ "listen 127.0.0.1:9753\n",
		  "b.conf:1:1: unknown key 'listen' (expected interface, xdp, mode, policy, metrics, "
		  "events, pin-dir, state-dir, web-config or connect-hooks)" },
		{ "metrics localhost:9753\n",
		  "b.conf:1:9: bad address 'localhost:9753': expected IPV4:PORT, [IPV6]:PORT (numeric) "
		  "or off" },
		{ "metrics 127.0.0.1\n",
		  "b.conf:1:9: bad address '127.0.0.1': expected IPV4:PORT, [IPV6]:PORT (numeric) or off" },
		{ "metrics 127.0.0.300:9753\n",
		  "b.conf:1:9: bad address '127.0.0.300:9753': expected IPV4:PORT, [IPV6]:PORT (numeric) "
		  "or off" },
		{ "metrics ::1:9753\n",
		  "b.conf:1:9: bad address '::1:9753': expected IPV4:PORT, [IPV6]:PORT (numeric) or off" },
		{ "metrics 127.0.0.1:70000\n", "b.conf:1:19: port '70000' is out of range (1-65535)" },
		{ "metrics [::1]:0\n", "b.conf:1:15: port '0' is out of range (1-65535)" },
		{ "mode enforce\nmode audit\n", "b.conf:2:1: mode is already set at line 1" },
		{ "mode permissive\n", "b.conf:1:6: mode must be enforce or audit, not 'permissive'" },
		{ "mode\n", "b.conf:1:5: expected a value after 'mode'" },
		{ "policy /etc/a.conf /etc/b.conf\n",
		  "b.conf:1:20: policy takes one value; unexpected '/etc/b.conf'" },
		{ "policy policy.conf\n", "b.conf:1:8: policy needs an absolute path, not 'policy.conf'" },
		{ "policy /a\npolicy /b\n", "b.conf:2:1: policy is already set at line 1" },
		{ "pin-dir sys/fs/bpf\n", "b.conf:1:9: pin-dir needs an absolute path, not 'sys/fs/bpf'" },
		{ "state-dir /a\nstate-dir /b\n", "b.conf:2:1: state-dir is already set at line 1" },
		{ "metrics off\nmetrics 127.0.0.1:1\n", "b.conf:2:1: metrics is already set at line 1" },
		{ "interface eth0\ninterface ib0 eth0\n",
		  "b.conf:2:15: interface 'eth0' is already listed at line 1" },
		{ "interface averyveryverylongname\n",
		  "b.conf:1:11: interface name 'averyveryverylongname' is longer than 15 characters" },
		{ "interface eth0:1\n", "b.conf:1:11: 'eth0:1' is not a valid interface name" },
		{ "xdp ../x\n", "b.conf:1:5: '../x' is not a valid interface name" },
		{ "interface eth0,,eth1\n", "b.conf:1:16: expected a value before ','" },
		{ "interface , eth1\n", "b.conf:1:11: expected a value before ','" },
		{ "interface eth0,\n", "b.conf:1:15: expected a value after ','" },
		{ "interface\n", "b.conf:1:10: expected a value after 'interface'" },
		{ ", eth0\n", "b.conf:1:1: expected a key, not ','" },
		{ "events stdout kafka\n",
		  "b.conf:1:15: unknown event output 'kafka' (expected stdout, syslog, off or an "
		  "absolute file path)" },
		{ "events stdout off\n", "b.conf:1:15: events off cannot be combined with other outputs" },
		{ "events syslog\nevents syslog\n", "b.conf:2:8: events 'syslog' is already listed at line 1" },
		{ "mode audit\x01\n", "b.conf:1:11: unexpected character 0x01" },
		{ "\n\ninterface eth\xc3\xa9\n", "b.conf:3:14: unexpected character 0xc3" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[CONFIG_ERROR_MAX] = "";
		struct daemon_config c;
		int ret = config_parse_text("b.conf", cases[i].text, &c, err);

		CHECK(ret < 0, "case %zu was accepted", i);
		CHECK(strcmp(err, cases[i].message) == 0, "case %zu:\n  got  %s\n  want %s", i, err,
		      cases[i].message);
	}
}

/* Flags are checked as file lines are, and replace the file's value for their key. */
static void test_flags(void)
{
	char err[CONFIG_ERROR_MAX] = "";
	struct daemon_config file, flags;

	config_parse_text("f.conf", "interface eth0 eth1\nmode enforce\nevents syslog\n", &file, err);
	config_init(&flags);
	flags.events.n = 0;
	CHECK(config_set_flag(&flags, CONFIG_INTERFACE, "--iface", "veth9", err) == 0, "%s", err);
	CHECK(config_set_flag(&flags, CONFIG_INTERFACE, "--iface", "sl-*", err) == 0, "%s", err);
	CHECK(config_set_flag(&flags, CONFIG_MODE, "--mode", "audit", err) == 0, "%s", err);
	CHECK(config_set_flag(&flags, CONFIG_POLICY, "--policy", "rel/p.conf", err) == 0,
	      "a relative --policy is the shell's: %s", err);
	config_overlay(&file, &flags);
	CHECK(file.ifaces.n == 2 && strcmp(file.ifaces.items[0].text, "veth9") == 0 &&
		      strcmp(file.ifaces.items[1].text, "sl-*") == 0,
	      "--iface replaces the file's interfaces");
	CHECK(file.mode == SLUICE_MODE_AUDIT, "--mode replaces the file's mode");
	CHECK(file.events.n == 1 && strcmp(file.events.items[0].text, "syslog") == 0,
	      "the file's events stay");

	CHECK(config_set_flag(&flags, CONFIG_MODE, "--mode", "enforce", err) < 0 &&
		      strcmp(err, "--mode: given twice") == 0,
	      "--mode twice: %s", err);
	config_init(&flags);
	CHECK(config_set_flag(&flags, CONFIG_MODE, "--mode", "bogus", err) < 0 &&
		      strcmp(err, "--mode: mode must be enforce or audit, not 'bogus'") == 0,
	      "--mode bogus: %s", err);
	CHECK(config_set_flag(&flags, CONFIG_METRICS, "--metrics", "host:1", err) < 0 &&
		      strcmp(err, "--metrics: bad address 'host:1': expected IPV4:PORT, [IPV6]:PORT "
				  "(numeric) or off") == 0,
	      "--metrics host:1: %s", err);
	CHECK(config_set_flag(&flags, CONFIG_INTERFACE, "--iface", "a/b", err) < 0 &&
		      strcmp(err, "--iface: 'a/b' is not a valid interface name") == 0,
	      "--iface a/b: %s", err);
}

/* Against the system: a policy that is not there, names and patterns matching nothing. */
static void test_check(void)
{
	static const char *const ifnames[] = { "lo", "eth0", "ib0", "ib1" };
	char err[CONFIG_ERROR_MAX] = "", policy[] = "/tmp/sluice-test-config.XXXXXX", text[512];
	struct daemon_config c, flags;
	int fd = mkstemp(policy);

	CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	close(fd);

	snprintf(text, sizeof(text), "interface eth0 ib*\npolicy %s\n", policy);
	config_parse_text("c.conf", text, &c, err);
	CHECK(config_check(&c, ifnames, 4, err) == 0, "good configuration: %s", err);

	snprintf(text, sizeof(text), "interface eth0\n  interface ib* en*\npolicy %s\n", policy);
	config_parse_text("c.conf", text, &c, err);
	CHECK(config_check(&c, ifnames, 4, err) == -ENODEV &&
		      strcmp(err, "c.conf:2:17: pattern 'en*' matches no interface") == 0,
	      "pattern matching nothing: %s", err);

	snprintf(text, sizeof(text), "policy %s\ninterface eth0\nxdp eth1\n", policy);
	config_parse_text("c.conf", text, &c, err);
	CHECK(config_check(&c, ifnames, 4, err) == -ENODEV &&
		      strcmp(err, "c.conf:3:5: no such interface: eth1") == 0,
	      "missing xdp interface: %s", err);

	config_parse_text("c.conf", "interface eth0\npolicy /nonexistent/sluice/p.conf\n", &c, err);
	CHECK(config_check(&c, ifnames, 4, err) == -ENOENT &&
		      strcmp(err, "c.conf:2:8: cannot read policy /nonexistent/sluice/p.conf: No "
				  "such file or directory") == 0,
	      "missing policy: %s", err);

	/* The same checks name the flag for a value given on the command line. */
	config_parse_text("c.conf", "interface eth0\n", &c, err);
	config_init(&flags);
	config_set_flag(&flags, CONFIG_INTERFACE, "--iface", "nosuch0", err);
	config_set_flag(&flags, CONFIG_POLICY, "--policy", policy, err);
	config_overlay(&c, &flags);
	CHECK(config_check(&c, ifnames, 4, err) == -ENODEV &&
		      strcmp(err, "--iface: no such interface: nosuch0") == 0,
	      "missing --iface: %s", err);

	/* The default policy path, when nothing names one, is reported as the default. */
	config_parse_text("c.conf", "interface eth0\n", &c, err);
	snprintf(c.policy.text, sizeof(c.policy.text), "/nonexistent/sluice/policy.conf");
	CHECK(config_check(&c, ifnames, 4, err) == -ENOENT &&
		      strncmp(err, "default: cannot read policy /nonexistent/sluice/policy.conf",
			      58) == 0,
	      "missing default policy: %s", err);
	unlink(policy);
}

/* The shipped example is a valid configuration. */
static void test_example(void)
{
	char err[CONFIG_ERROR_MAX] = "";
	struct daemon_config c;

	CHECK(config_parse_file(SLUICE_SOURCE_DIR "/examples/sluice.conf", &c, err) == 0,
	      "examples/sluice.conf: %s", err);
	CHECK(c.ifaces.n >= 1 && c.mode == SLUICE_MODE_AUDIT, "the example starts in audit");
	CHECK(config_parse_file("/nonexistent/sluice.conf", &c, err) == -ENOENT &&
		      strcmp(err, "cannot read configuration /nonexistent/sluice.conf: No such file "
				  "or directory") == 0,
	      "missing file: %s", err);
}

int main(void)
{
	test_good();
	test_bad();
	test_flags();
	test_check();
	test_example();
	return check_summary();
}
