/*
 * thpfrag: a small workload for thpreplay captures.
 *
 *   thpfrag frag MB [--mlock] [--keep-every K]
 *       Fault MB MiB of anonymous memory as 4 KiB pages (MADV_NOHUGEPAGE), then
 *       MADV_DONTNEED all but every K-th page (default 2: every other page), so
 *       the freed memory is order-0 holes between pages that stay in use.
 *       With --mlock the kept pages are mlocked (unevictable; compaction will not
 *       migrate them when vm.compact_unevictable_allowed=0).  Prints "ready" on
 *       stdout, then sleeps until killed.
 *
 *   thpfrag fault MB [--threads T] [--no-madvise] [--hold]
 *       Map MB MiB, 2 MiB aligned, MADV_HUGEPAGE (unless --no-madvise), and touch
 *       every 4 KiB page: the first touch of each 2 MiB region is a THP fault; if
 *       it falls back, the remaining touches fault 4 KiB pages.  With T threads
 *       the regions are interleaved between threads (a qemu-like guest RAM fill).
 *       Prints how many regions ended up huge (from /proc/self/smaps_rollup).
 *       With --hold it then sleeps until killed (to keep free huge blocks taken).
 *
 *   thpfrag unmovable MB [--hole-every K] [--fill PCT]
 *       Scatter UNMOVABLE kernel pages over every pageblock the process can
 *       reach, then give the rest back: fault MB MiB of anonymous 4 KiB pages
 *       (MADV_NOHUGEPAGE; MB should cover all free memory of the local node),
 *       MADV_DONTNEED every K-th page (default 8), then fill PCT % (default 90)
 *       of those holes with pipe buffer pages (1 MiB pipes kept full and open;
 *       pipe_write allocates them with GFP_HIGHUSER|__GFP_ACCOUNT: no
 *       __GFP_MOVABLE, so they are unmovable allocations that compaction can
 *       neither migrate nor reclaim), then munmap the anonymous memory.  With K
 *       large enough that a hole set is less than half a pageblock, the kernel
 *       steals single pages from MOVABLE pageblocks without converting them,
 *       so afterwards most pageblocks of the node are mostly free but each holds
 *       a few pinned pipe pages: no 2 MiB block can be freed or compacted.
 *       Prints "ready ..." on stdout, then sleeps until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define PAGE 4096UL
#define HPAGE (2UL << 20)

static void die(const char *what) { perror(what); exit(1); }

static _Noreturn void frag(size_t mb, int do_mlock, size_t keep_every)
{
	size_t len = mb << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) die("mmap");
	if (madvise(p, len, MADV_NOHUGEPAGE)) die("madvise(NOHUGEPAGE)");
	for (size_t off = 0; off < len; off += PAGE) p[off] = 1;
	for (size_t i = 0, off = 0; off < len; off += PAGE, i++)
		if (i % keep_every != 0 && madvise(p + off, PAGE, MADV_DONTNEED)) die("madvise(DONTNEED)");
	if (do_mlock) {
		for (size_t off = 0; off < len; off += keep_every * PAGE)
			if (mlock(p + off, PAGE)) die("mlock");
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) pause();
}

static _Noreturn void unmovable(size_t mb, size_t hole_every, size_t fill_pct)
{
	size_t len = mb << 20, npages = len / PAGE, holes = 0;
	static char buf[PAGE];
	struct rlimit rl = { 1 << 16, 1 << 16 };
	setrlimit(RLIMIT_NOFILE, &rl); /* as root; if it fails we stop at the old limit */
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) die("mmap");
	if (madvise(p, len, MADV_NOHUGEPAGE)) die("madvise(NOHUGEPAGE)");
	for (size_t off = 0; off < len; off += PAGE) p[off] = 1;
	for (size_t i = 0; i < npages; i++)
		if (i % hole_every == 0) {
			if (madvise(p + i * PAGE, PAGE, MADV_DONTNEED)) die("madvise(DONTNEED)");
			holes++;
		}
	size_t want = holes * fill_pct / 100, got = 0, npipes = 0;
	memset(buf, 0x5a, sizeof buf);
	while (got < want) {
		int fd[2];
		if (pipe2(fd, O_NONBLOCK)) { perror("pipe2"); break; }
		npipes++;
		fcntl(fd[1], F_SETPIPE_SZ, 1 << 20); /* 256 buffers; default 16 if refused */
		/* one full page per write: every write takes a fresh page */
		while (got < want && write(fd[1], buf, PAGE) == (ssize_t)PAGE) got++;
		/* both ends stay open: the pages live until the process dies */
	}
	munmap(p, len);
	printf("ready holes=%zu pipe_pages=%zu pipes=%zu\n", holes, got, npipes);
	fflush(stdout);
	for (;;) pause();
}

struct fault_arg { char *base; size_t regions; int tid, nthreads; };

static void *fault_thread(void *v)
{
	struct fault_arg *a = v;
	for (size_t r = a->tid; r < a->regions; r += a->nthreads)
		for (size_t off = 0; off < HPAGE; off += PAGE) a->base[r * HPAGE + off] = 1;
	return NULL;
}

static long anon_huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long kb = -1;
	if (!f) return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) break;
	fclose(f);
	return kb;
}

static int fault(size_t mb, int nthreads, int do_madvise, int hold)
{
	size_t len = mb << 20, regions = len / HPAGE;
	char *raw = mmap(NULL, len + HPAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) die("mmap");
	char *base = (char *)(((unsigned long)raw + HPAGE - 1) & ~(HPAGE - 1));
	if (do_madvise && madvise(base, len, MADV_HUGEPAGE)) die("madvise(HUGEPAGE)");
	pthread_t th[64];
	struct fault_arg args[64];
	if (nthreads < 1 || nthreads > 64) { fprintf(stderr, "threads: 1..64\n"); return 2; }
	for (int t = 0; t < nthreads; t++) {
		args[t] = (struct fault_arg){ base, regions, t, nthreads };
		if (pthread_create(&th[t], NULL, fault_thread, &args[t])) die("pthread_create");
	}
	for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
	long kb = anon_huge_kb();
	printf("regions=%zu huge=%ld\n", regions, kb < 0 ? -1 : kb / 2048);
	fflush(stdout);
	while (hold) pause();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) goto usage;
	size_t mb = strtoul(argv[2], NULL, 10);
	if (!strcmp(argv[1], "frag")) {
		int do_mlock = 0; size_t keep = 2;
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--mlock")) do_mlock = 1;
			else if (!strcmp(argv[i], "--keep-every") && i + 1 < argc) keep = strtoul(argv[++i], NULL, 10);
			else goto usage;
		}
		if (keep < 1) goto usage;
		frag(mb, do_mlock, keep);
	}
	if (!strcmp(argv[1], "unmovable")) {
		size_t hole = 8, fill = 90;
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--hole-every") && i + 1 < argc) hole = strtoul(argv[++i], NULL, 10);
			else if (!strcmp(argv[i], "--fill") && i + 1 < argc) fill = strtoul(argv[++i], NULL, 10);
			else goto usage;
		}
		if (hole < 1 || fill > 100) goto usage;
		unmovable(mb, hole, fill);
	}
	if (!strcmp(argv[1], "fault")) {
		int threads = 1, madv = 1, hold = 0;
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
			else if (!strcmp(argv[i], "--no-madvise")) madv = 0;
			else if (!strcmp(argv[i], "--hold")) hold = 1;
			else goto usage;
		}
		return fault(mb, threads, madv, hold);
	}
usage:
	fprintf(stderr, "usage: thpfrag frag MB [--mlock] [--keep-every K] | thpfrag fault MB [--threads T] [--no-madvise] [--hold]\n"
		"       | thpfrag unmovable MB [--hole-every K] [--fill PCT]\n");
	return 2;
}
