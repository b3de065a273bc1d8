// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * sluice-bench-udp: small-packet UDP throughput from one network namespace to another.
 *
 * iperf3 sends one datagram per system call, so at 64 bytes it measures mostly its own
 * system-call overhead; this sender hands the kernel a batch per sendmmsg() call, so that
 * the per-packet work of the stack (and of whatever filters the sender's egress) is what
 * limits the rate. The receiving socket is created in the receiver's namespace and the
 * sending one in the sender's (a socket keeps the namespace it was created in), so one
 * process drives both ends: the sender on one CPU, the receiver thread on another.
 *
 *   1. warm-up: a datagram every millisecond until one arrives (neighbour resolution);
 *   2. the sender sends for --seconds as fast as it can;
 *   3. the receiver drains until nothing arrives for DRAIN_IDLE_MS.
 * Prints one line: "sent N received M seconds S rx_pps R tx_pps T", where rx_pps is the
 * datagrams the receiving socket got per second of sending: what the path delivered.
 *
 * With --spread N there is no receiver: the datagrams go to N consecutive addresses from
 * --dst on (one batch rotates through them), for a flood a filter drops — the deny path.
 * UDP without IP_RECVERR does not report the filter's drop, so every datagram costs the
 * sender the same system-call share and stack path whatever the filter decides; the line
 * printed is "sent N seconds S tx_pps T" (tx_pps: what the sender's CPU got through).
 *
 * Needs root (setns, SO_RCVBUFFORCE). Never part of ctest: rates do not pass or fail.
 */
#define _GNU_SOURCE /* setns, sendmmsg, recvmmsg, CPU_SET */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define DEFAULT_PORT 9
#define DEFAULT_SECONDS 5.0
#define DEFAULT_SIZE 64
#define DEFAULT_BATCH 64
#define DEFAULT_SEND_CPU 0
#define DEFAULT_RECV_CPU 1
#define BATCH_MAX 1024
#define PAYLOAD_MAX 1472 /* one Ethernet frame over IPv4 */
/* A receive buffer deep enough that a receiver scheduled out briefly loses nothing. */
#define RCVBUF_BYTES (64 << 20)
/* The receiver polls its stop flag this often when nothing arrives. */
#define RECV_TIMEOUT_MS 50
/* Warm-up: give up when no datagram arrives within this many tries, 1 ms apart. */
#define WARMUP_TRIES 3000
/* The end: the receiver is done once nothing arrived for this long. */
#define DRAIN_IDLE_MS 200
#define DRAIN_MAX_MS 5000
/* --spread: destinations at most, and how long to send before timing (ARP, caches). */
#define SPREAD_MAX 65536
#define SPREAD_WARMUP_S 0.5

struct options {
	const char *from_ns, *to_ns;
	struct sockaddr_storage dst;
	socklen_t dst_len;
	double seconds;
	unsigned size, batch;
	int send_cpu, recv_cpu;
	unsigned spread; /* 0: one destination and a receiver; N: N destinations, no receiver */
};

struct receiver {
	int fd;
	int cpu;
	unsigned batch;
	atomic_ullong received;
	atomic_bool stop;
	int err;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Pin the calling thread; a CPU that does not exist is not an error worth stopping for. */
static void pin_to(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		fprintf(stderr, "udp: cannot pin to CPU %d: %s (running unpinned)\n", cpu,
			strerror(errno));
}

static int enter_ns(const char *name)
{
	char path[PATH_MAX];
	int fd, err = 0;

	if (snprintf(path, sizeof(path), "/run/netns/%s", name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		err = -errno;
		fprintf(stderr, "udp: cannot enter network namespace %s: %s\n", name,
			strerror(-err));
	}
	if (fd >= 0)
		close(fd);
	return err;
}

static void *receive(void *arg)
{
	struct receiver *r = arg;
	static char bufs[BATCH_MAX][PAYLOAD_MAX];
	struct mmsghdr msgs[BATCH_MAX];
	struct iovec iovs[BATCH_MAX];

	pin_to(r->cpu);
	for (unsigned i = 0; i < r->batch; i++) {
		iovs[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = sizeof(bufs[i]) };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iovs[i], .msg_iovlen = 1 } };
	}
	while (!atomic_load(&r->stop)) {
		int n = recvmmsg(r->fd, msgs, r->batch, MSG_WAITFORONE, NULL);

		if (n > 0) {
			atomic_fetch_add(&r->received, (unsigned long long)n);
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			r->err = -errno;
			fprintf(stderr, "udp: recvmmsg: %s\n", strerror(errno));
			break;
		}
	}
	return NULL;
}

/* A UDP socket of the destination's family, created in network namespace ns. */
static int socket_in(const char *ns, const struct options *o)
{
	int fd, err = enter_ns(ns);

	if (err)
		return err;
	fd = socket(o->dst.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

static int open_receiver(const struct options *o)
{
	struct timeval tv = { .tv_usec = RECV_TIMEOUT_MS * 1000 };
	int fd, bytes = RCVBUF_BYTES, err;

	fd = socket_in(o->to_ns, o);
	if (fd < 0)
		return fd;
	/* FORCE: past net.core.rmem_max, which a fresh namespace leaves small. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    bind(fd, (const struct sockaddr *)&o->dst, o->dst_len) < 0) {
		err = -errno;
		fprintf(stderr, "udp: cannot set up the receiving socket in %s: %s\n", o->to_ns,
			strerror(-err));
		close(fd);
		return err;
	}
	return fd;
}

static int open_sender(const struct options *o)
{
	int fd, err;

	fd = socket_in(o->from_ns, o);
	if (fd < 0)
		return fd;
	if (connect(fd, (const struct sockaddr *)&o->dst, o->dst_len) < 0) {
		err = -errno;
		fprintf(stderr, "udp: cannot connect the sending socket in %s: %s\n", o->from_ns,
			strerror(-err));
		close(fd);
		return err;
	}
	return fd;
}

/* Sends batches until the deadline; returns the datagrams the kernel took, or -errno. */
static long long send_until(int fd, struct mmsghdr *msgs, unsigned batch, double deadline)
{
	long long sent = 0;

	while (now_s() < deadline) {
		int n = sendmmsg(fd, msgs, batch, 0);

		if (n > 0) {
			sent += n;
		} else if (n < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
			/* ENOBUFS: the qdisc or a filter dropped one; the rest still count. */
			int err = -errno;

			fprintf(stderr, "udp: sendmmsg: %s\n", strerror(-err));
			return err;
		}
	}
	return sent;
}

/* The i-th address from dst on (the last 32 bits counted up), port kept. */
static void nth_address(const struct options *o, unsigned i, struct sockaddr_storage *out)
{
	unsigned char *last = o->dst.ss_family == AF_INET
				      ? (unsigned char *)&((struct sockaddr_in *)out)->sin_addr
				      : ((struct sockaddr_in6 *)out)->sin6_addr.s6_addr + 12;
	uint32_t v;

	*out = o->dst;
	memcpy(&v, last, sizeof(v));
	v = htonl(ntohl(v) + i);
	memcpy(last, &v, sizeof(v));
}

/* Every destination once, a batch per call; the datagrams sent, or -errno. */
static long long spread_round(int fd, struct mmsghdr *msgs, unsigned spread, unsigned batch)
{
	long long sent = 0;

	for (unsigned off = 0; off < spread; off += batch) {
		unsigned n = spread - off < batch ? spread - off : batch;
		int k = sendmmsg(fd, msgs + off, n, 0);

		if (k > 0)
			sent += k;
		else if (k < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return sent;
}

/* --spread: a flood to o->spread destinations nobody receives; see the header comment. */
static int run_spread(const struct options *o)
{
	static struct sockaddr_storage dests[SPREAD_MAX];
	static struct mmsghdr msgs[SPREAD_MAX];
	static char payload[PAYLOAD_MAX];
	struct iovec iov = { .iov_base = payload, .iov_len = o->size };
	long long sent = 0, n = 0;
	double t0, t1;
	int fd;

	memset(payload, 'x', sizeof(payload));
	for (unsigned i = 0; i < o->spread; i++) {
		nth_address(o, i, &dests[i]);
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_name = &dests[i],
							 .msg_namelen = o->dst_len,
							 .msg_iov = &iov,
							 .msg_iovlen = 1 } };
	}
	fd = socket_in(o->from_ns, o);
	if (fd < 0)
		return fd;
	pin_to(o->send_cpu);
	/* Warm-up: neighbour resolution, the filter's per-destination state, caches. */
	for (t0 = now_s(); n >= 0 && now_s() < t0 + SPREAD_WARMUP_S;)
		n = spread_round(fd, msgs, o->spread, o->batch);
	for (t0 = now_s(); n >= 0 && now_s() < t0 + o->seconds; sent += n)
		n = spread_round(fd, msgs, o->spread, o->batch);
	t1 = now_s();
	close(fd);
	if (n < 0) {
		fprintf(stderr, "udp: sendmmsg: %s\n", strerror((int)-n));
		return (int)n;
	}
	printf("sent %lld seconds %.6f tx_pps %.0f\n", sent, t1 - t0, sent / (t1 - t0));
	return 0;
}

static int run(const struct options *o)
{
	static char payload[PAYLOAD_MAX];
	struct mmsghdr msgs[BATCH_MAX];
	struct iovec iov = { .iov_base = payload, .iov_len = o->size };
	struct receiver r = { .fd = -1, .cpu = o->recv_cpu, .batch = o->batch };
	unsigned long long base, received, last;
	double t0, t1, idle_since;
	long long sent;
	pthread_t thread;
	int fd, err;

	memset(payload, 'x', sizeof(payload));
	for (unsigned i = 0; i < o->batch; i++)
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov, .msg_iovlen = 1 } };
	r.fd = open_receiver(o);
	if (r.fd < 0)
		return r.fd;
	fd = open_sender(o);
	if (fd < 0) {
		close(r.fd);
		return fd;
	}
	err = pthread_create(&thread, NULL, receive, &r);
	if (err) {
		close(fd);
		close(r.fd);
		return -err;
	}
	pin_to(o->send_cpu);

	/* 1. Until the path works end to end (the first datagram waits for ARP). */
	for (unsigned i = 0; i < WARMUP_TRIES && atomic_load(&r.received) == 0; i++) {
		if (send(fd, payload, o->size, 0) < 0 && errno != ENOBUFS && errno != EAGAIN)
			break;
		usleep(1000);
	}
	if (atomic_load(&r.received) == 0) {
		fprintf(stderr, "udp: no datagram from %s reached %s during the warm-up\n",
			o->from_ns, o->to_ns);
		err = -EHOSTUNREACH;
		goto out;
	}
	usleep(DRAIN_IDLE_MS * 1000);
	base = atomic_load(&r.received);

	/* 2. As fast as the sender's CPU goes. */
	t0 = now_s();
	sent = send_until(fd, msgs, o->batch, t0 + o->seconds);
	t1 = now_s();
	if (sent < 0) {
		err = (int)sent;
		goto out;
	}

	/* 3. What is still queued on the receiving side counts: it was delivered. */
	last = atomic_load(&r.received);
	idle_since = now_s();
	while (now_s() - idle_since < DRAIN_IDLE_MS / 1e3 && now_s() - t1 < DRAIN_MAX_MS / 1e3) {
		usleep(10000);
		if (atomic_load(&r.received) != last) {
			last = atomic_load(&r.received);
			idle_since = now_s();
		}
	}
	received = atomic_load(&r.received) - base;
	printf("sent %lld received %llu seconds %.6f rx_pps %.0f tx_pps %.0f\n", sent, received,
	       t1 - t0, received / (t1 - t0), sent / (t1 - t0));
out:
	atomic_store(&r.stop, true);
	pthread_join(thread, NULL);
	close(fd);
	close(r.fd);
	return err ? err : r.err;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sluice-bench-udp --from NS --to NS --dst ADDR [OPTIONS]\n"
		"\n"
		"Small UDP datagrams as fast as one CPU sends them (sendmmsg), from network\n"
		"namespace --from to a socket bound to --dst in namespace --to; prints the rate\n"
		"the receiving socket got them at.\n"
		"\n"
		"Options:\n"
		"  --from NS         sending namespace (a name under /run/netns)\n"
		"  --to NS           receiving namespace, which holds --dst\n"
		"  --dst ADDR        destination address (IPv4 or IPv6)\n"
		"  --port N          destination port (default %d)\n"
		"  --seconds S       how long to send (default %.0f)\n"
		"  --size N          UDP payload bytes (default %d, at most %d)\n"
		"  --batch N         datagrams per sendmmsg/recvmmsg call (default %d, at most "
		"%d)\n"
		"  --send-cpu N      CPU of the sender (default %d; -1: not pinned)\n"
		"  --recv-cpu N      CPU of the receiver (default %d; -1: not pinned)\n"
		"  --spread N        no receiver: send to N consecutive addresses from --dst on\n"
		"                    (at most %d), e.g. a flood a filter denies; prints tx_pps\n"
		"  -h, --help        this text\n"
		"\n"
		"Example:\n"
		"  sluice-bench-udp --from node --to world --dst 198.51.100.10 --seconds 2\n",
		DEFAULT_PORT, DEFAULT_SECONDS, DEFAULT_SIZE, PAYLOAD_MAX, DEFAULT_BATCH,
		BATCH_MAX, DEFAULT_SEND_CPU, DEFAULT_RECV_CPU, SPREAD_MAX);
}

static bool parse_long(const char *opt, const char *s, long min, long max, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < min || *out > max) {
		fprintf(stderr, "udp: %s: expected a number from %ld to %ld, got '%s'\n", opt, min,
			max, s);
		return false;
	}
	return true;
}

static int parse_dst(const char *s, long port, struct options *o)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&o->dst;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&o->dst;

	memset(&o->dst, 0, sizeof(o->dst));
	if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((unsigned short)port);
		o->dst_len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)port);
		o->dst_len = sizeof(*v6);
	} else {
		fprintf(stderr, "udp: --dst: not an IPv4 or IPv6 address: '%s'\n", s);
		return 2;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "dst", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "seconds", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'l' },
		{ "batch", required_argument, NULL, 'b' },
		{ "send-cpu", required_argument, NULL, 'S' },
		{ "recv-cpu", required_argument, NULL, 'R' },
		{ "spread", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *dst = NULL;
	long v, port = DEFAULT_PORT;
	char *end;
	int opt;

	*o = (struct options){
		.seconds = DEFAULT_SECONDS,
		.size = DEFAULT_SIZE,
		.batch = DEFAULT_BATCH,
		.send_cpu = DEFAULT_SEND_CPU,
		.recv_cpu = DEFAULT_RECV_CPU,
	};
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			o->from_ns = optarg;
			break;
		case 't':
			o->to_ns = optarg;
			break;
		case 'd':
			dst = optarg;
			break;
		case 'p':
			if (!parse_long("--port", optarg, 1, 65535, &port))
				return 2;
			break;
		case 's':
			errno = 0;
			o->seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end ||
			    !(o->seconds > 0 && o->seconds <= 3600)) {
				fprintf(stderr,
					"udp: --seconds: expected a number of seconds from "
					"0 to 3600, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'l':
			if (!parse_long("--size", optarg, 1, PAYLOAD_MAX, &v))
				return 2;
			o->size = (unsigned)v;
			break;
		case 'b':
			if (!parse_long("--batch", optarg, 1, BATCH_MAX, &v))
				return 2;
			o->batch = (unsigned)v;
			break;
		case 'S':
			if (!parse_long("--send-cpu", optarg, -1, CPU_SETSIZE - 1, &v))
				return 2;
			o->send_cpu = (int)v;
			break;
		case 'R':
			if (!parse_long("--recv-cpu", optarg, -1, CPU_SETSIZE - 1, &v))
				return 2;
			o->recv_cpu = (int)v;
			break;
		case 'N':
			if (!parse_long("--spread", optarg, 1, SPREAD_MAX, &v))
				return 2;
			o->spread = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "udp: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o->from_ns || (!o->to_ns && !o->spread) || !dst) {
		fprintf(stderr, "udp: --from and --dst are required, and --to without --spread\n");
		usage(stderr);
		return 2;
	}
	return parse_dst(dst, port, o);
}

int main(int argc, char **argv)
{
	struct options o;
	int err = parse_args(argc, argv, &o);

	if (err)
		return err;
	err = o.spread ? run_spread(&o) : run(&o);
	if (err) {
		fprintf(stderr, "udp: %s\n", strerror(-err));
		return 1;
	}
	return 0;
}
