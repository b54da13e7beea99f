/*
 * replay.c - runs a fuzz target's LLVMFuzzerTestOneInput over saved inputs
 * without libFuzzer, so `make test` replays every corpus with any compiler.
 * Arguments are files or directories (every regular file directly inside).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Returns 0 after running the target on path, -1 if it cannot be read. */
static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!buf || err) {
        free(buf);
        return -1;
    }
    /* an exact-size copy, so ASan catches reads one past the input */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
    unsigned long ran = 0;
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: cannot read '%s'\n", argv[i]);
            failed = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) != 0) {
                fprintf(stderr, "replay: cannot read '%s'\n", argv[i]);
                failed = 1;
            } else {
                ran++;
            }
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, by_name);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list '%s'\n", argv[i]);
            failed = 1;
            continue;
        }
        for (int j = 0; j < n; j++) {
            size_t need = strlen(argv[i]) + strlen(names[j]->d_name) + 2;
            char *path = malloc(need);
            if (path) {
                snprintf(path, need, "%s/%s", argv[i], names[j]->d_name);
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                    if (run_file(path) != 0) {
                        fprintf(stderr, "replay: cannot read '%s'\n", path);
                        failed = 1;
                    } else {
                        ran++;
                    }
                }
                free(path);
            }
            free(names[j]);
        }
        free(names);
    }
    printf("replay: %lu inputs ran\n", ran);
    /* an input that crashes never gets here; a missing corpus must not pass
     * as "0 inputs, all fine" */
    return failed;
}
