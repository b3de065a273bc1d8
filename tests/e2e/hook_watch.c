// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hook_watch IFNAME — for the upgrade test (upgrade.sh): ask the kernel every millisecond
 * which programs run on IFNAME's tcx egress and ingress, until SIGTERM. Then print one JSON
 * line: the number of polls, how many found a hook empty, and the program ids seen on each
 * hook in the order they appeared.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>

#ifndef BPF_TCX_INGRESS
#define BPF_TCX_INGRESS 46
#endif
#ifndef BPF_TCX_EGRESS
#define BPF_TCX_EGRESS 47
#endif

#define SEEN_MAX 64   /* program ids remembered per hook */
#define PROGS_MAX 16  /* programs one hook may hold */

struct hook {
	const char *name;
	enum bpf_attach_type type;
	unsigned long empty;
	__u32 seen[SEEN_MAX];
	unsigned nseen;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* One query: count an empty hook, remember program ids not seen yet. */
static int poll_hook(unsigned ifindex, struct hook *h)
{
	__u32 ids[PROGS_MAX];
	LIBBPF_OPTS(bpf_prog_query_opts, q, .prog_ids = ids, .prog_cnt = PROGS_MAX);

	/* tcx takes the ifindex where other attach types take a target fd (a union). */
	if (bpf_prog_query_opts((int)ifindex, h->type, &q) < 0)
		return -errno;
	if (q.prog_cnt == 0)
		h->empty++;
	for (__u32 i = 0; i < q.prog_cnt && i < PROGS_MAX; i++) {
		unsigned k = 0;

		while (k < h->nseen && h->seen[k] != ids[i])
			k++;
		if (k == h->nseen && h->nseen < SEEN_MAX)
			h->seen[h->nseen++] = ids[i];
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct hook hooks[] = { { .name = "tc_egress", .type = BPF_TCX_EGRESS },
				{ .name = "tc_ingress", .type = BPF_TCX_INGRESS } };
	const struct timespec ms = { 0, 1000000 };
	unsigned long polls = 0;
	unsigned ifindex;

	if (argc != 2 || !(ifindex = if_nametoindex(argv[1]))) {
		fprintf(stderr, "usage: hook_watch IFNAME (an existing interface)\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	fprintf(stderr, "watching\n");
	while (!stop) {
		for (size_t h = 0; h < 2; h++) {
			int err = poll_hook(ifindex, &hooks[h]);

			if (err) {
				fprintf(stderr, "cannot query %s: %s\n", hooks[h].name, strerror(-err));
				return 1;
			}
		}
		polls++;
		nanosleep(&ms, NULL);
	}
	printf("{\"polls\":%lu", polls);
	for (size_t h = 0; h < 2; h++) {
		printf(",\"%s\":{\"empty\":%lu,\"progs\":[", hooks[h].name, hooks[h].empty);
		for (unsigned k = 0; k < hooks[h].nseen; k++)
			printf("%s%u", k ? "," : "", hooks[h].seen[k]);
		printf("]}");
	}
	printf("}\n");
	return 0;
}
