/* LD_PRELOAD shim: makes fsync, fdatasync or pwrite fail with EIO, from the Nth call on.
 *
 *   DISKFAULT_CALL      fsync | fdatasync | pwrite   (pwrite covers pwrite64)
 *   DISKFAULT_NTH       the first failing call, counted once armed (default 1)
 *   DISKFAULT_ARM_FILE  calls count only while this file exists (unset: always)
 *
 * Every other call goes to the C library's own function (dlsym RTLD_NEXT). Once the
 * fault has begun, every later call of that kind fails too: a disk that went bad.
 * Built by tests/abuse/diskfault.py with gcc when the tests run.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_long counted;

static int should_fail(const char *kind) {
    const char *which = getenv("DISKFAULT_CALL");
    if (which == NULL || strcmp(which, kind) != 0)
        return 0;
    const char *arm = getenv("DISKFAULT_ARM_FILE");
    if (arm != NULL && access(arm, F_OK) != 0)
        return 0;
    const char *nth = getenv("DISKFAULT_NTH");
    long n = nth != NULL ? atol(nth) : 1;
    return atomic_fetch_add(&counted, 1) + 1 >= n;
}

typedef int (*sync_fn)(int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

#define REAL(name, type) \
    static type real_##name; \
    if (real_##name == NULL) real_##name = (type)dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync, sync_fn);
    if (should_fail("fsync")) { errno = EIO; return -1; }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync, sync_fn);
    if (should_fail("fdatasync")) { errno = EIO; return -1; }
    return real_fdatasync(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite, pwrite_fn);
    if (should_fail("pwrite")) { errno = EIO; return -1; }
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64, pwrite_fn);
    if (should_fail("pwrite")) { errno = EIO; return -1; }
    return real_pwrite64(fd, buf, count, offset);
}
