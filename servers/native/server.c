/* concbench `native`: the "speed of light" reference model.
 *
 * One thread, Linux epoll (level-triggered), non-blocking sockets, speaking the whole of
 * docs/protocol.md byte for byte as protocol/session.py's ServerSession does: ECHO, WORK
 * (CRC32 + LCG, computed here in C), SLEEP (a min-heap of deadlines behind one timerfd),
 * BYE, ERROR 1/2/3/4, ordered responses, the 1 MiB output bound (rule 7).
 *
 *   server --fd N                 serve on the inherited, already-listening socket N
 *                                 (what `python -m servers native` does: the launcher has
 *                                 printed READY already)
 *   server [--host H] [--port P]  listen itself and print `READY <host> <port>`
 *   --die-with-parent PID         get SIGTERM when parent process PID ends (for a Python
 *                                 program that runs this as a child)
 *
 * SIGTERM/SIGINT (read through a signalfd): close everything, exit 0.
 * Everything but READY goes to standard error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HEADER_SIZE 9
#define MAX_PAYLOAD (16u * 1024u * 1024u)
#define MAX_WORK_ITERATIONS 10000000u
#define MAX_SLEEP_US 10000000u
#define OUTPUT_LIMIT (1024u * 1024u)
#define RECV_CHUNK (256u * 1024u) /* the most one read asks for */
#define READ_MIN (16u * 1024u)     /* what one read asks for when no large frame is due */
#define SHRINK_ABOVE (4u * RECV_CHUNK) /* an emptied buffer bigger than this is freed */
#define BACKLOG 8192
#define ACCEPTS_PER_WAKE 64
#define MAX_EVENTS 256

enum { OP_ECHO = 1, OP_WORK = 2, OP_SLEEP = 3, OP_BYE = 4 };
enum { STATUS_OK = 0, STATUS_ERROR = 1 };
enum { ERR_UNKNOWN_OPERATION = 1, ERR_FRAME_TOO_LARGE = 2, ERR_OUT_OF_RANGE = 3,
       ERR_OVER_CAPACITY = 4 };

/* ---------------------------------------------------------------- diagnostics */

static void log_msg(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("native: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}

static void die(const char *what) {
    log_msg("%s: %s", what, strerror(errno));
    exit(1);
}

/* ---------------------------------------------------------------- CRC32 (zlib's) */

static uint32_t crc_table[256];

static void crc32_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const uint8_t *data, size_t size) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; i++)
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t work(const uint8_t *payload, size_t size, uint32_t iterations) {
    uint32_t x = crc32_of(payload, size);
    for (uint32_t i = 0; i < iterations; i++)
        x = x * 1103515245u + 12345u; /* unsigned arithmetic wraps modulo 2**32 */
    return x;
}

/* ---------------------------------------------------------------- byte buffers */

typedef struct {
    uint8_t *data;
    size_t start, end, cap;
} buffer_t;

static size_t buf_len(const buffer_t *b) { return b->end - b->start; }

static void buf_free(buffer_t *b) {
    free(b->data);
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}

/* Room for at least `extra` more bytes at the end. */
static void buf_reserve(buffer_t *b, size_t extra) {
    if (b->cap - b->end >= extra)
        return;
    size_t used = buf_len(b);
    if (b->start > 0) { /* compact first */
        memmove(b->data, b->data + b->start, used);
        b->start = 0;
        b->end = used;
        if (b->cap - b->end >= extra)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - used < extra)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data) {
        log_msg("out of memory (%zu bytes)", cap);
        exit(1);
    }
    b->data = data;
    b->cap = cap;
}

static void buf_append(buffer_t *b, const void *data, size_t size) {
    buf_reserve(b, size);
    memcpy(b->data + b->end, data, size);
    b->end += size;
}

static void buf_consume(buffer_t *b, size_t size) {
    b->start += size;
    if (b->start == b->end) {
        b->start = b->end = 0;
        if (b->cap > SHRINK_ABOVE)
            buf_free(b);
    }
}

/* The 9-byte frame header of docs/protocol.md, big-endian. bench/selfcheck/client.c writes it
 * with the same function: each of the two is one self-contained file compiled on its own (this
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

static uint32_t get_u32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void append_response(buffer_t *b, uint8_t status, uint32_t value,
                            const void *payload, size_t size) {
    uint8_t header[HEADER_SIZE];
    put_header(header, (uint32_t)size, status, value);
    buf_reserve(b, HEADER_SIZE + size);
    buf_append(b, header, HEADER_SIZE);
    if (size)
        buf_append(b, payload, size);
}

static void append_error(buffer_t *b, uint32_t error, const char *message) {
    append_response(b, STATUS_ERROR, error, message, strlen(message));
}

/* ---------------------------------------------------------------- clock */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------- connections */

typedef struct {
    int fd;
    uint32_t generation;   /* tells a stale epoll event from one for a reused fd */
    uint32_t interest;     /* events registered with epoll */
    int heap_index;        /* place in the timer heap, -1 when no SLEEP is pending */
    int64_t deadline;      /* when the pending SLEEP reply is due; -1: none */
    int closing, eof, failed;
    buffer_t in, out, delayed;
} conn_t;

static int epoll_fd = -1, listen_fd = -1, signal_fd = -1, timer_fd = -1, spare_fd = -1;
static conn_t **conns;   /* by fd */
static size_t conns_size;
static uint32_t last_generation;
static conn_t **heap;    /* min-heap of connections by deadline */
static size_t heap_len, heap_cap;
static int64_t armed_deadline = -1;

static uint64_t tag(int fd, uint32_t generation) {
    return ((uint64_t)generation << 32) | (uint32_t)fd;
}

/* ---- timer heap */

static void heap_swap(size_t a, size_t b) {
    conn_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_index = (int)a;
    heap[b]->heap_index = (int)b;
}

static void heap_up(size_t i) {
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent]->deadline <= heap[i]->deadline)
            break;
        heap_swap(i, parent);
        i = parent;
    }
}

static void heap_down(size_t i) {
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, least = i;
        if (left < heap_len && heap[left]->deadline < heap[least]->deadline)
            least = left;
        if (right < heap_len && heap[right]->deadline < heap[least]->deadline)
            least = right;
        if (least == i)
            return;
        heap_swap(i, least);
        i = least;
    }
}

static void heap_push(conn_t *c) {
    if (heap_len == heap_cap) {
        size_t cap = heap_cap ? heap_cap * 2 : 64;
        conn_t **grown = realloc(heap, cap * sizeof *heap);
        if (!grown) {
            log_msg("out of memory (timer heap)");
            exit(1);
        }
        heap = grown;
        heap_cap = cap;
    }
    heap[heap_len] = c;
    c->heap_index = (int)heap_len++;
    heap_up(heap_len - 1);
}

static void heap_remove(conn_t *c) {
    if (c->heap_index < 0)
        return;
    size_t i = (size_t)c->heap_index;
    c->heap_index = -1;
    heap_len--;
    if (i == heap_len)
        return;
    heap[i] = heap[heap_len];
    heap[i]->heap_index = (int)i;
    heap_up(i);
    heap_down((size_t)heap[i]->heap_index);
}

/* Point the timerfd at the earliest SLEEP deadline (or disarm it). */
static void arm_timer(void) {
    int64_t due = heap_len ? heap[0]->deadline : -1;
    if (due == armed_deadline)
        return;
    struct itimerspec spec = {0};
    if (due >= 0) {
        spec.it_value.tv_sec = due / 1000000000;
        spec.it_value.tv_nsec = due % 1000000000;
        if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
            spec.it_value.tv_nsec = 1; /* zero would disarm */
    }
    if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0)
        die("timerfd_settime");
    armed_deadline = due;
}

/* ---- the protocol session (mirrors bench.protocol.ServerSession) */

static int wants_read(const conn_t *c) {
    return !c->closing && buf_len(&c->out) < OUTPUT_LIMIT && c->deadline < 0;
}

/* Answer buffered requests in order, as far as the output bound and SLEEP allow. */
static void process(conn_t *c, int64_t now) {
    if (c->deadline >= 0) {
        if (now < c->deadline)
            return;
        heap_remove(c);
        c->deadline = -1;
        buf_append(&c->out, c->delayed.data + c->delayed.start, buf_len(&c->delayed));
        buf_free(&c->delayed);
    }
    if (c->closing)
        return;
    buffer_t *in = &c->in;
    while (buf_len(in) >= HEADER_SIZE && buf_len(&c->out) < OUTPUT_LIMIT) {
        const uint8_t *frame = in->data + in->start;
        uint32_t length = get_u32(frame);
        uint8_t op = frame[4];
        uint32_t value = get_u32(frame + 5);
        if (length > MAX_PAYLOAD) {
            append_error(&c->out, ERR_FRAME_TOO_LARGE, "frame too large");
            c->closing = 1;
            buf_consume(in, buf_len(in));
            return;
        }
        size_t size = HEADER_SIZE + (size_t)length;
        if (buf_len(in) < size)
            return;
        const uint8_t *payload = frame + HEADER_SIZE;
        char message[64];
        switch (op) {
        case OP_ECHO:
            append_response(&c->out, STATUS_OK, 0, payload, length);
            break;
        case OP_WORK:
            if (value > MAX_WORK_ITERATIONS)
                append_error(&c->out, ERR_OUT_OF_RANGE, "WORK n over limit");
            else
                append_response(&c->out, STATUS_OK, work(payload, length, value), NULL, 0);
            break;
        case OP_SLEEP:
            if (value > MAX_SLEEP_US) {
                append_error(&c->out, ERR_OUT_OF_RANGE, "SLEEP us over limit");
            } else if (value == 0) {
                append_response(&c->out, STATUS_OK, 0, payload, length);
            } else {
                append_response(&c->delayed, STATUS_OK, 0, payload, length);
                c->deadline = now + (int64_t)value * 1000;
                heap_push(c);
                buf_consume(in, size);
                return;
            }
            break;
        case OP_BYE:
            append_response(&c->out, STATUS_OK, 0, NULL, 0);
            c->closing = 1;
            buf_consume(in, buf_len(in));
            return;
        default:
            snprintf(message, sizeof message, "unknown operation %u", (unsigned)op);
            append_error(&c->out, ERR_UNKNOWN_OPERATION, message);
        }
        buf_consume(in, size);
    }
}

/* ---- socket I/O */

/* Send what the socket takes; after each send, answer any backlog the bound held back. */
static void flush(conn_t *c) {
    while (buf_len(&c->out)) {
        ssize_t sent = send(c->fd, c->out.data + c->out.start, buf_len(&c->out), MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            c->failed = 1; /* reset: close quietly (rule 5) */
            return;
        }
        buf_consume(&c->out, (size_t)sent);
        if (buf_len(&c->in) && c->deadline < 0)
            process(c, now_ns());
    }
}

/* One recv (level-triggered), then answer and try to send at once. */
static void read_once(conn_t *c) {
    if (!wants_read(c) || c->eof)
        return;
    /* a small read for small frames; room for the rest of a large frame (up to RECV_CHUNK) */
    size_t want = READ_MIN, held = buf_len(&c->in);
    if (held >= HEADER_SIZE) {
        size_t length = get_u32(c->in.data + c->in.start);
        if (length <= MAX_PAYLOAD && HEADER_SIZE + length > held + want)
            want = HEADER_SIZE + length - held < RECV_CHUNK ? HEADER_SIZE + length - held
                                                             : RECV_CHUNK;
    }
    buf_reserve(&c->in, want);
    ssize_t got = recv(c->fd, c->in.data + c->in.end, c->in.cap - c->in.end, 0);
    if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            c->failed = 1;
        return;
    }
    if (got == 0) {
        c->eof = 1;
        return;
    }
    c->in.end += (size_t)got;
    process(c, now_ns());
    if (buf_len(&c->out))
        flush(c);
}

static void close_conn(conn_t *c) {
    heap_remove(c);
    conns[c->fd] = NULL;
    close(c->fd); /* also drops it from the epoll set: no dup of it exists */
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->delayed);
    free(c);
}

static int finished(const conn_t *c) {
    if (c->failed)
        return 1;
    if (c->closing)
        return buf_len(&c->out) == 0;
    return c->eof && buf_len(&c->out) == 0 && c->deadline < 0;
}

/* Close a finished connection, or bring its epoll interest up to date. */
static void settle(conn_t *c) {
    if (finished(c)) {
        close_conn(c);
        return;
    }
    uint32_t want = ((wants_read(c) && !c->eof) ? EPOLLIN : 0) | (buf_len(&c->out) ? EPOLLOUT : 0);
    if (want == c->interest)
        return;
    struct epoll_event ev = {.events = want, .data.u64 = tag(c->fd, c->generation)};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        c->failed = 1;
        close_conn(c);
        return;
    }
    c->interest = want;
}

/* ---- accepting */

static void refuse(int fd) {
    uint8_t frame[HEADER_SIZE + 32];
    const char *message = "server over capacity";
    size_t size = strlen(message);
    put_header(frame, (uint32_t)size, STATUS_ERROR, ERR_OVER_CAPACITY);
    memcpy(frame + HEADER_SIZE, message, size);
    ssize_t ignored = send(fd, frame, HEADER_SIZE + size, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    close(fd);
}

/* Out of descriptors: free the spare, take one connection, refuse it, keep the spare again. */
static void refuse_one_without_fds(void) {
    if (spare_fd < 0)
        return;
    close(spare_fd);
    spare_fd = -1;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        refuse(fd);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static int add_conn(int fd) {
    if ((size_t)fd >= conns_size) {
        size_t size = conns_size ? conns_size : 1024;
        while (size <= (size_t)fd)
            size *= 2;
        conn_t **grown = realloc(conns, size * sizeof *conns);
        if (!grown)
            return -1;
        memset(grown + conns_size, 0, (size - conns_size) * sizeof *conns);
        conns = grown;
        conns_size = size;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->fd = fd;
    if (++last_generation == 0) /* 0 tags the listener, signal and timer descriptors */
        last_generation = 1;
    c->generation = last_generation;
    c->heap_index = -1;
    c->deadline = -1;
    c->interest = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag(fd, c->generation)};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(c);
        return -1;
    }
    conns[fd] = c;
    return 0;
}

static void accept_some(void) {
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                refuse_one_without_fds();
            else if (errno == ECONNABORTED || errno == EINTR)
                continue;
            return; /* EAGAIN: the backlog is empty */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (add_conn(fd) < 0)
            refuse(fd);
    }
}

/* ---- the loop */

static void fire_timers(void) {
    uint64_t expirations;
    ssize_t ignored = read(timer_fd, &expirations, sizeof expirations);
    (void)ignored;
    armed_deadline = -1; /* a fired one-shot timer is disarmed */
    int64_t now = now_ns();
    while (heap_len && heap[0]->deadline <= now) {
        conn_t *c = heap[0];
        process(c, now); /* takes it off the heap, appends the reply, answers the rest */
        flush(c);
        settle(c);
    }
}

static void service(conn_t *c, uint32_t events) {
    if (events & (EPOLLHUP | EPOLLERR)) { /* gone both ways: nothing can be delivered */
        close_conn(c);
        return;
    }
    if (events & EPOLLIN)
        read_once(c);
    if ((events & EPOLLOUT) || buf_len(&c->out))
        flush(c);
    settle(c);
}

static void run(void) {
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        arm_timer();
        int count = epoll_wait(epoll_fd, events, MAX_EVENTS, -1);
        if (count < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < count; i++) {
            uint64_t data = events[i].data.u64;
            int fd = (int)(uint32_t)data;
            uint32_t generation = (uint32_t)(data >> 32);
            if (generation == 0) {
                if (fd == signal_fd)
                    return;
                if (fd == listen_fd)
                    accept_some();
                else if (fd == timer_fd)
                    fire_timers();
                continue;
            }
            conn_t *c = (size_t)fd < conns_size ? conns[fd] : NULL;
            if (c && c->generation == generation)
                service(c, events[i].events);
        }
    }
}

/* ---------------------------------------------------------------- setup */

static void watch(int fd) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag(fd, 0)};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
}

static void raise_fd_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/* Listen on host:port ourselves and print the READY line. */
static int listen_on(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found;
    int status = getaddrinfo(host, port, &hints, &found);
    if (status != 0) {
        log_msg("cannot resolve %s: %s", host, gai_strerror(status));
        exit(1);
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, found->ai_addr, found->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0) {
        log_msg("cannot listen on %s:%s: %s", host, port, strerror(errno));
        exit(1);
    }
    freeaddrinfo(found);
    struct sockaddr_storage bound;
    socklen_t size = sizeof bound;
    char text[INET6_ADDRSTRLEN] = "?";
    unsigned real_port = 0;
    if (getsockname(fd, (struct sockaddr *)&bound, &size) < 0)
        die("getsockname");
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *six = (struct sockaddr_in6 *)&bound;
        inet_ntop(AF_INET6, &six->sin6_addr, text, sizeof text);
        real_port = ntohs(six->sin6_port);
    } else {
        struct sockaddr_in *four = (struct sockaddr_in *)&bound;
        inet_ntop(AF_INET, &four->sin_addr, text, sizeof text);
        real_port = ntohs(four->sin_port);
    }
    printf("READY %s %u\n", text, real_port);
    fflush(stdout);
    return fd;
}

static void usage(void) {
    fputs("usage: server --fd N | server [--host 127.0.0.1] [--port 0]"
          " [--die-with-parent PID]\n", stderr);
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = "0";
    int inherited = -1;
    pid_t parent = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--fd") == 0)
            inherited = atoi(argv[++i]);
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = argv[++i];
        else if (strcmp(argv[i], "--die-with-parent") == 0)
            parent = (pid_t)atol(argv[++i]);
        else
            usage();
    }
    /* SIGTERM/SIGINT arrive on a descriptor; they may already be blocked (and pending) when
     * the Python launcher execs us, so a signal sent during the hand-over is not lost. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (sigprocmask(SIG_BLOCK, &stop, NULL) < 0)
        die("sigprocmask");
    if (parent > 0 && (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent))
        return 0; /* the parent is already gone: nobody to serve for */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    crc32_init();

    if (inherited >= 0) {
        int type = 0;
        socklen_t size = sizeof type;
        if (getsockopt(inherited, SOL_SOCKET, SO_TYPE, &type, &size) < 0 || type != SOCK_STREAM) {
            log_msg("--fd %d is not a stream socket", inherited);
            return 2;
        }
        listen_fd = inherited;
        fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
    } else {
        listen_fd = listen_on(host, port);
    }
    int flags = fcntl(listen_fd, F_GETFL);
    if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0)
        die("fcntl");

    if ((epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    if ((signal_fd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        die("signalfd");
    if ((timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        die("timerfd_create");
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    watch(signal_fd);
    watch(listen_fd);
    watch(timer_fd);

    run();

    close(listen_fd); /* stop accepting, then close every connection */
    for (size_t fd = 0; fd < conns_size; fd++)
        if (conns[fd])
            close_conn(conns[fd]);
    return 0;
}
