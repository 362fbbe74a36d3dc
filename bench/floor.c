/* The physical floor for recording one process's memory: every interval (on an absolute clock),
 * read the same /proc files memtrail reads for a process (stat, status, the fd directory) and
 * append one line to a log. Built and run by bench/compare.
 *
 * By default it opens the files on every tick, as a plain recorder does. With `held` it opens them
 * once and re-reads them in place (pread from offset 0, rewinddir), as memtrail does since
 * session 5: the least that way of reading can cost.
 *
 * usage: floor PID INTERVAL_MS DURATION_S LOGFILE [held]
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long field_after_comm(const char *stat, int n) {
    const char *p = strrchr(stat, ')');
    if (!p) return -1;
    p += 2; /* state is field 3 */
    for (int i = 3; i < n; i++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    return strtol(p, NULL, 10);
}

int main(int argc, char **argv) {
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "held") == 0)) {
        fprintf(stderr, "usage: floor PID INTERVAL_MS DURATION_S LOGFILE [held]\n");
        return 2;
    }
    int held = argc == 6;
    const char *pid = argv[1];
    long interval_ms = atol(argv[2]), duration_s = atol(argv[3]);
    FILE *log = fopen(argv[4], "w");
    if (!log) { perror(argv[4]); return 1; }
    char path[64], buf[4096];
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long ticks = duration_s * 1000 / interval_ms;
    int stat_fd = -1, status_fd = -1;
    DIR *fd_dir = NULL;
    if (held) {
        snprintf(path, sizeof path, "/proc/%s/stat", pid);
        stat_fd = open(path, O_RDONLY | O_CLOEXEC);
        snprintf(path, sizeof path, "/proc/%s/status", pid);
        status_fd = open(path, O_RDONLY | O_CLOEXEC);
        snprintf(path, sizeof path, "/proc/%s/fd", pid);
        fd_dir = opendir(path);
        if (stat_fd < 0) { perror("stat"); return 1; }
    }
    for (long t = 0; t < ticks; t++) {
        size_t n;
        if (held) {
            ssize_t r = pread(stat_fd, buf, sizeof buf - 1, 0);
            if (r <= 0) break;
            n = (size_t)r;
        } else {
            snprintf(path, sizeof path, "/proc/%s/stat", pid);
            FILE *f = fopen(path, "r");
            if (!f) break;
            n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
        }
        buf[n] = 0;
        long vsize = field_after_comm(buf, 23), rss = field_after_comm(buf, 24);
        long threads = field_after_comm(buf, 20);
        long swap = -1;
        if (held) {
            ssize_t r = status_fd < 0 ? -1 : pread(status_fd, buf, sizeof buf - 1, 0);
            buf[r > 0 ? r : 0] = 0;
            char *at = strstr(buf, "\nVmSwap:");
            if (at) swap = strtol(at + 8, NULL, 10);
        } else {
            snprintf(path, sizeof path, "/proc/%s/status", pid);
            FILE *f = fopen(path, "r");
            if (f) {
                while (fgets(buf, sizeof buf, f))
                    if (strncmp(buf, "VmSwap:", 7) == 0) swap = strtol(buf + 7, NULL, 10);
                fclose(f);
            }
        }
        long fds = 0;
        DIR *d = fd_dir;
        if (held) {
            if (d) rewinddir(d);
        } else {
            snprintf(path, sizeof path, "/proc/%s/fd", pid);
            d = opendir(path);
        }
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) if (e->d_name[0] != '.') fds++;
            if (!held) closedir(d);
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        fprintf(log, "%ld.%03ld %ld %ld %ld %ld %ld\n", (long)now.tv_sec, now.tv_nsec / 1000000,
                rss * 4096, vsize, swap * 1024, threads, fds);
        fflush(log);
        next.tv_nsec += interval_ms * 1000000L;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    fclose(log);
    return 0;
}
