// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-progtime PROG_ID [-- COMMAND [ARGS...]]: what a BPF program cost in the real
 * path while COMMAND ran (without one: from start until SIGTERM or SIGINT). The kernel's
 * run-time statistics are switched on for this process's lifetime only (BPF_ENABLE_STATS:
 * they go off when its fd closes, so nothing stays changed on the machine). It prints
 * "progtime ready" to stderr once counting, then at the end "progtime runs N ns T
 * ns_per_run A". For the throughput benchmark: how much of each packet's time is sluice's
 * program.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <bpf/bpf.h>

static int prog_stats(int fd, unsigned long long *runs, unsigned long long *ns)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return -errno;
	*runs = info.run_cnt;
	*ns = info.run_time_ns;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long runs0, ns0, runs1, ns1;
	int stats_fd, prog_fd, status;
	char *end;
	unsigned long id;
	pid_t pid = 0;
	sigset_t stop;

	if (argc < 2 || (argc > 2 && (argc < 4 || strcmp(argv[2], "--") != 0))) {
		fprintf(stderr, "usage: sluice-bench-progtime PROG_ID [-- COMMAND [ARGS...]]\n");
		return 2;
	}
	/* Blocked before counting starts, so a SIGTERM right after "ready" is not lost. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	id = strtoul(argv[1], &end, 10);
	if (*end || !id) {
		fprintf(stderr, "progtime: not a program id: '%s'\n", argv[1]);
		return 2;
	}
	prog_fd = bpf_prog_get_fd_by_id((__u32)id);
	stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (prog_fd < 0 || stats_fd < 0 || prog_stats(prog_fd, &runs0, &ns0)) {
		fprintf(stderr, "progtime: cannot read the statistics of program %lu: %s\n", id,
			strerror(errno));
		return 1;
	}
	fprintf(stderr, "progtime ready\n");
	status = 0;
	if (argc == 2) {
		int sig;

		sigwait(&stop, &sig);
	} else {
		pid = fork();
		if (pid == 0) {
			sigprocmask(SIG_UNBLOCK, &stop, NULL);
			execvp(argv[3], argv + 3);
			fprintf(stderr, "progtime: cannot run %s: %s\n", argv[3], strerror(errno));
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &status, 0) < 0) {
			fprintf(stderr, "progtime: cannot run %s: %s\n", argv[3], strerror(errno));
			return 1;
		}
	}
	if (prog_stats(prog_fd, &runs1, &ns1))
		return 1;
	fprintf(stderr, "progtime runs %llu ns %llu ns_per_run %.1f\n", runs1 - runs0, ns1 - ns0,
		runs1 > runs0 ? (double)(ns1 - ns0) / (runs1 - runs0) : 0.0);
	close(stats_fd);
	close(prog_fd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
