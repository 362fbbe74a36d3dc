/* Run a command and report the CPU time and peak RSS of its whole process tree, from wait4().
 * bench/compare starts every tool through this small launcher: a process forked straight from
 * Python would inherit the interpreter's RSS as its ru_maxrss (Linux keeps the high-water mark
 * across exec), while this launcher's children start from a few hundred KiB.
 *
 * usage: rusage STOP_AFTER_S OUTFILE|- CMD ARGS...
 *   STOP_AFTER_S > 0: send SIGINT after that many seconds (for tools without a duration flag).
 *   OUTFILE: where the command's stdout goes ("-" for /dev/null).
 * prints: "cpu_s maxrss_kib exit_status" on stderr
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: rusage STOP_AFTER_S OUTFILE|- CMD ARGS...\n");
        return 2;
    }
    double stop_after = atof(argv[1]);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        int fd = strcmp(argv[2], "-") == 0 ? open("/dev/null", O_WRONLY)
                                           : open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); close(fd); }
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) { dup2(null, 2); close(null); }
        /* A shell starts background jobs with SIGINT ignored, and exec keeps that: the tool
         * would then never see the SIGINT that stops it. */
        signal(SIGINT, SIG_DFL);
        execvp(argv[3], argv + 3);
        _exit(127);
    }
    if (stop_after > 0) {
        struct timespec t = {(time_t)stop_after, (long)((stop_after - (long)stop_after) * 1e9)};
        nanosleep(&t, NULL);
        kill(pid, SIGINT);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 1; }
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    fprintf(stderr, "%.6f %ld %d\n", cpu, ru.ru_maxrss, status);
    return 0;
}
