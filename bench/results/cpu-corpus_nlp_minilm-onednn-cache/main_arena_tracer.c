// (PERFLOG #47) LD_PRELOAD tracer: logs every allocation of at least TRACE_MIN bytes (default
// 256 KiB) that glibc serves from its main arena to a thread other than the main one (TRACE_MAIN=1:
// the main thread too), with a native backtrace, to TRACE_FILE.<pid>. It showed that in Ray's actor
// thread and in a worker thread in process alike, many of torch's and numpy's large transient arrays
// (1.5-30 MB) come from the main arena, where the pipeline's long-lived data lives.
// Build: gcc -O2 -shared -fPIC -o trace.so main_arena_tracer.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static void *(*r_malloc)(size_t), *(*r_calloc)(size_t, size_t), *(*r_realloc)(void *, size_t);
static int (*r_pm)(void **, size_t, size_t);
static __thread int busy;
static size_t min_size = 1 << 18; static int fd = -1, initd = 0; static long events = 0;
static char boot[8192]; static size_t boot_used = 0;
static void init(void) {
  if (initd) return; initd = 1;
  r_malloc = dlsym(RTLD_NEXT, "malloc"); r_calloc = dlsym(RTLD_NEXT, "calloc");
  r_realloc = dlsym(RTLD_NEXT, "realloc"); r_pm = dlsym(RTLD_NEXT, "posix_memalign");
  const char *m = getenv("TRACE_MIN"); if (m) min_size = strtoul(m, 0, 10);
  const char *f = getenv("TRACE_FILE"); if (f) { char name[512]; snprintf(name, sizeof name, "%s.%d", f, getpid()); fd = open(name, 01 | 0100 | 01000, 0644); }
}
static void check(void *p, size_t n, const char *what) {
  if (!p || n < min_size || fd < 0 || busy) return;
  size_t sz = ((size_t *)p)[-1];
  if (sz & 2) return;          // mmapped chunk
  if (sz & 4) return;          // non-main arena
  if (!getenv("TRACE_MAIN") && syscall(SYS_gettid) == getpid()) return;
  busy = 1;
  char line[128]; int k = snprintf(line, sizeof line, "@@ %s %zu tid %ld n %ld\n", what, n, (long)syscall(SYS_gettid), ++events);
  write(fd, line, k);
  void *bt[24]; int depth = backtrace(bt, 24); backtrace_symbols_fd(bt, depth, fd);
  busy = 0;
}
void *malloc(size_t n) { if (!initd) { if (!r_malloc) { init(); } } if (!r_malloc) { void *p = boot + boot_used; boot_used += (n + 15) & ~15; return p; } void *p = r_malloc(n); check(p, n, "malloc"); return p; }
void *calloc(size_t a, size_t b) { if (!r_calloc) { if (initd) { void *p = boot + boot_used; boot_used += (a * b + 15) & ~15; memset(p, 0, a * b); return p; } init(); } void *p = r_calloc(a, b); check(p, a * b, "calloc"); return p; }
void *realloc(void *q, size_t n) { if (!r_realloc) init(); void *p = r_realloc(q, n); check(p, n, "realloc"); return p; }
int posix_memalign(void **out, size_t al, size_t n) { if (!r_pm) init(); int rc = r_pm(out, al, n); if (!rc) check(*out, n, "memalign"); return rc; }
void free(void *p) { static void (*r_free)(void *); if ((char *)p >= boot && (char *)p < boot + sizeof boot) return; if (!r_free) r_free = dlsym(RTLD_NEXT, "free"); r_free(p); }
