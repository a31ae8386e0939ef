/* concbench's minimal native load client: the yardstick the Python swarm is measured against.
 *
 * Closed loop over N connections: each keeps P ECHO requests of S payload bytes in flight and
 * sends the next one as each response arrives. One thread, epoll (level-triggered), one clock
 * read per wake-up. Every response byte is checked against the expected echo frame.
 *
 *   client --port P [--host 127.0.0.1] [--connections 50] [--pipeline 1] [--payload 64]
 *          [--duration 5] [--warmup 1] [--timeout 5]
 *
 * Prints one JSON object on stdout: responses counted in the measured window (after the
 * warm-up), throughput_rps, and the client's own CPU use over that window. Exit status 0 when
 * every connection ran clean, 1 when any failed (the JSON says how), 2 for bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER_SIZE 9
#define MAX_EVENTS 512
#define RECV_SIZE 65536

typedef struct {
    int fd;
    size_t position;       /* offset into the expected response frame */
    int failed;
} conn_t;

static uint8_t *request, *expected;
static size_t frame_size;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

/* The 9-byte frame header of docs/protocol.md, big-endian. servers/native/server.c writes it
 * with the same function: each of the two is one self-contained file compiled on its own (the
 * server under servers/, which imports nothing from bench/), so neither includes the other. */
static void put_header(uint8_t *out, uint32_t length, uint8_t code, uint32_t value) {
    out[0] = (uint8_t)(length >> 24);
    out[1] = (uint8_t)(length >> 16);
    out[2] = (uint8_t)(length >> 8);
    out[3] = (uint8_t)length;
    out[4] = code;
    out[5] = (uint8_t)(value >> 24);
    out[6] = (uint8_t)(value >> 16);
    out[7] = (uint8_t)(value >> 8);
    out[8] = (uint8_t)value;
}

static void usage(void) {
    fputs("usage: client --port P [--host 127.0.0.1] [--connections 50] [--pipeline 1]\n"
          "              [--payload 64] [--duration 5] [--warmup 1] [--timeout 5]\n", stderr);
    exit(2);
}

/* Send `count` requests in one write (small: the socket buffer takes them whole). */
static int send_requests(conn_t *c, long count) {
    for (long i = 0; i < count; i++) {
        size_t sent = 0;
        while (sent < frame_size) {
            ssize_t n = send(c->fd, request + sent, frame_size - sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    /* closed loop keeps at most P frames queued: wait briefly for room */
                    struct timespec pause = {0, 50000};
                    nanosleep(&pause, NULL);
                    continue;
                }
                return -1;
            }
            sent += (size_t)n;
        }
    }
    return 0;
}

/* Check received bytes against the expected echo stream; return the responses completed. */
static long consume(conn_t *c, const uint8_t *data, size_t size) {
    long completed = 0;
    while (size) {
        size_t take = frame_size - c->position;
        if (take > size)
            take = size;
        if (memcmp(data, expected + c->position, take) != 0)
            return -1;
        data += take;
        size -= take;
        c->position += take;
        if (c->position == frame_size) {
            c->position = 0;
            completed++;
        }
    }
    return completed;
}

static int connect_to(const struct addrinfo *address) {
    int fd = socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, address->ai_addr, address->ai_addrlen) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = NULL;
    long connections = 50, pipeline = 1, payload = 64;
    double duration = 5.0, warmup = 1.0, timeout = 5.0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *name = argv[i], *value = argv[++i];
        if (!strcmp(name, "--host")) host = value;
        else if (!strcmp(name, "--port")) port = value;
        else if (!strcmp(name, "--connections")) connections = atol(value);
        else if (!strcmp(name, "--pipeline")) pipeline = atol(value);
        else if (!strcmp(name, "--payload")) payload = atol(value);
        else if (!strcmp(name, "--duration")) duration = atof(value);
        else if (!strcmp(name, "--warmup")) warmup = atof(value);
        else if (!strcmp(name, "--timeout")) timeout = atof(value);
        else usage();
    }
    if (!port || connections < 1 || pipeline < 1 || payload < 0 || payload > 1048576 ||
        duration <= 0 || warmup < 0 || timeout <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);

    frame_size = HEADER_SIZE + (size_t)payload;
    request = malloc(frame_size);
    expected = malloc(frame_size);
    put_header(request, (uint32_t)payload, 1 /* ECHO */, 0);
    put_header(expected, (uint32_t)payload, 0 /* OK */, 0);
    for (long i = 0; i < payload; i++)
        request[HEADER_SIZE + i] = expected[HEADER_SIZE + i] = (uint8_t)('a' + i % 26);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *address;
    int status = getaddrinfo(host, port, &hints, &address);
    if (status != 0) {
        fprintf(stderr, "client: cannot resolve %s: %s\n", host, gai_strerror(status));
        return 2;
    }
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    conn_t *conns = calloc((size_t)connections, sizeof *conns);
    long connect_failures = 0, mismatches = 0, closed = 0, resets = 0, timeouts = 0;
    for (long i = 0; i < connections; i++) {
        conns[i].fd = connect_to(address);
        if (conns[i].fd < 0) {
            conns[i].failed = 1;
            connect_failures++;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    freeaddrinfo(address);

    long live = connections - connect_failures;
    for (long i = 0; i < connections; i++)
        if (!conns[i].failed && send_requests(&conns[i], pipeline) < 0) {
            conns[i].failed = 1;
            resets++;
            live--;
        }

    static uint8_t data[RECV_SIZE];
    struct epoll_event events[MAX_EVENTS];
    double start = now_s(), window_start = start + warmup, end = window_start + duration;
    double last_progress = start, cpu_start = 0, now = start;
    long total = 0, at_window_start = 0;
    int in_window = warmup == 0;
    if (in_window)
        cpu_start = cpu_s();
    while (live > 0) {
        int count = epoll_wait(epoll_fd, events, MAX_EVENTS, 50);
        now = now_s();
        if (!in_window && now >= window_start) {
            in_window = 1;
            at_window_start = total;
            cpu_start = cpu_s();
        }
        if (now >= end)
            break;
        if (count <= 0) {
            if (now - last_progress > timeout) {
                timeouts++;
                break;
            }
            continue;
        }
        last_progress = now;
        for (int e = 0; e < count; e++) {
            conn_t *c = &conns[events[e].data.u64];
            if (c->failed)
                continue;
            ssize_t got = recv(c->fd, data, sizeof data, 0);
            long completed = 0;
            if (got > 0)
                completed = consume(c, data, (size_t)got);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0 || completed < 0 || send_requests(c, completed) < 0) {
                if (got == 0) closed++;
                else if (got < 0) resets++;
                else if (completed < 0) mismatches++;
                else resets++;
                c->failed = 1;
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                live--;
                continue;
            }
            total += completed;
        }
    }
    double window_end = now < end ? now : end;
    double measured = in_window ? window_end - window_start : 0.0;
    double cpu = in_window ? cpu_s() - cpu_start : 0.0;
    long responses = in_window ? total - at_window_start : 0;
    long errors = connect_failures + mismatches + closed + resets + timeouts;
    printf("{\"client\": \"native\", \"connections\": %ld, \"pipeline\": %ld, \"payload\": %ld, "
           "\"warmup_s\": %.3f, \"duration_s\": %.6f, \"window\": {\"monotonic_start_s\": %.6f, "
           "\"monotonic_end_s\": %.6f}, \"responses\": %ld, "
           "\"throughput_rps\": %.1f, \"cpu_percent\": %.1f, \"errors\": {\"connect\": %ld, "
           "\"mismatch\": %ld, \"eof\": %ld, \"reset\": %ld, \"timeout\": %ld}}\n",
           connections, pipeline, payload, warmup, measured, window_start,
           window_start + measured, responses,
           measured > 0 ? (double)responses / measured : 0.0,
           measured > 0 ? 100.0 * cpu / measured : 0.0, connect_failures, mismatches, closed,
           resets, timeouts);
    fflush(stdout);
    for (long i = 0; i < connections; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    return errors ? 1 : 0;
}
