/* The machine calibration's native half (bench/run/calibration.py): what one round trip
 * between two processes and one system call cost on this machine, today.
 *
 *   calibrate pingpong CPU_A CPU_B SECONDS   two processes bounce one byte over a socketpair,
 *                                            pinned to CPU_A and CPU_B (the same CPU or two)
 *   calibrate syscall SECONDS                getppid(2) in a loop (the cheapest system call)
 *
 * Prints one JSON line: {"mode": ..., "count": N, "seconds": S, "per_second": N/S, "ns": S/N*1e9}.
 * The loops check the clock every 1024 iterations, so each run lasts about SECONDS.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static void report(const char *mode, long count, double seconds) {
    printf("{\"mode\": \"%s\", \"count\": %ld, \"seconds\": %.6f, \"per_second\": %.1f, "
           "\"ns\": %.2f}\n", mode, count, seconds, count / seconds, seconds / count * 1e9);
}

static int pingpong(int cpu_a, int cpu_b, double seconds) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
        perror("socketpair");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    char byte = 0;
    if (child == 0) { /* the echoing side: until the parent closes its end */
        close(pair[0]);
        if (pin(cpu_b) != 0) _exit(2);
        while (read(pair[1], &byte, 1) == 1)
            if (write(pair[1], &byte, 1) != 1) break;
        _exit(0);
    }
    close(pair[1]);
    if (pin(cpu_a) != 0) {
        perror("sched_setaffinity");
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return 1;
    }
    long count = 0;
    double start = now(), end = start;
    while (end - start < seconds) {
        for (int i = 0; i < 1024; i++, count++) {
            if (write(pair[0], &byte, 1) != 1 || read(pair[0], &byte, 1) != 1) {
                perror("pingpong");
                kill(child, SIGKILL);
                waitpid(child, NULL, 0);
                return 1;
            }
        }
        end = now();
    }
    close(pair[0]);
    waitpid(child, NULL, 0);
    report(cpu_a == cpu_b ? "pingpong_same_cpu" : "pingpong_two_cpus", count, end - start);
    return 0;
}

static int syscalls(double seconds) {
    long count = 0;
    double start = now(), end = start;
    while (end - start < seconds) {
        for (int i = 0; i < 1024; i++, count++) syscall(SYS_getppid);
        end = now();
    }
    report("syscall", count, end - start);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "pingpong") == 0)
        return pingpong(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
    if (argc == 3 && strcmp(argv[1], "syscall") == 0) return syscalls(atof(argv[2]));
    fprintf(stderr, "usage: calibrate pingpong CPU_A CPU_B SECONDS | syscall SECONDS\n");
    return 2;
}
