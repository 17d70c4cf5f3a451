// (PERFLOG #50) LD_PRELOAD tracer: every anonymous mmap of at least 64 KiB made through the PLT
// (glibc's malloc maps its own blocks and arenas internally, so those are not seen here) and every
// munmap, with the shared object that called mmap, one line each to MMAP_TRACE.<pid>:
//   M <addr> <length> <caller object>      U <addr> <length>
// unit_annotator_probe.py (KINDS=N with MMAP_TRACE set) reads it and asks mincore() how much of
// each live mapping is resident, by caller. Build: gcc -O2 -shared -fPIC -o mmap_tracer.so mmap_tracer.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static void *(*r_mmap)(void *, size_t, int, int, int, off_t);
static int (*r_munmap)(void *, size_t);
static int fd = -2;
static void init(void) {
  if (!r_mmap) { r_mmap = dlsym(RTLD_NEXT, "mmap"); r_munmap = dlsym(RTLD_NEXT, "munmap"); }
  if (fd == -2) {
    const char *f = getenv("MMAP_TRACE"); fd = -1;
    if (f) { char name[512]; snprintf(name, sizeof name, "%s.%d", f, getpid()); fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644); }
  }
}
void *mmap(void *a, size_t n, int prot, int flags, int f, off_t off) {
  init();
  void *p = r_mmap(a, n, prot, flags, f, off);
  if (p != MAP_FAILED && (flags & MAP_ANONYMOUS) && n >= (1 << 16) && fd >= 0) {
    Dl_info info; const char *who = "?";
    if (dladdr(__builtin_return_address(0), &info) && info.dli_fname) who = info.dli_fname;
    const char *slash = strrchr(who, '/'); if (slash) who = slash + 1;
    char line[400]; int k = snprintf(line, sizeof line, "M %lx %zu %s\n", (unsigned long)p, n, who);
    write(fd, line, k);
  }
  return p;
}
void *mmap64(void *a, size_t n, int prot, int flags, int f, off_t off) __attribute__((alias("mmap")));
int munmap(void *a, size_t n) {
  init();
  int rc = r_munmap(a, n);
  if (!rc && fd >= 0 && n >= (1 << 16)) { char line[64]; int k = snprintf(line, sizeof line, "U %lx %zu\n", (unsigned long)a, n); write(fd, line, k); }
  return rc;
}
