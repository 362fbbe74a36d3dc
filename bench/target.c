/* The process every tool records in bench/compare: grows by 2 MiB every 100 ms (touching the
 * pages, so RSS really rises) up to 50 MiB, frees it all, and starts again, for DURATION_S.
 *
 * usage: target DURATION_S
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
    long duration_s = argc > 1 ? atol(argv[1]) : 600;
    enum { STEP = 2 << 20, STEPS = 25 };
    char *blocks[STEPS] = {0};
    struct timespec pause = {0, 100 * 1000000L};
    for (long t = 0; t < duration_s * 10;) {
        for (int i = 0; i < STEPS && t < duration_s * 10; i++, t++) {
            /* mmap, not malloc: freeing must really hand the memory back. */
            char *b = mmap(NULL, STEP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            blocks[i] = b == MAP_FAILED ? NULL : b;
            if (blocks[i]) memset(blocks[i], i + 1, STEP);
            nanosleep(&pause, NULL);
        }
        for (int i = 0; i < STEPS; i++) {
            if (blocks[i]) munmap(blocks[i], STEP);
            blocks[i] = NULL;
        }
    }
    return 0;
}
