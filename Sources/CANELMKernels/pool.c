// A persistent worker pool: workers spin briefly for new work (a decode step issues hundreds of
// small jobs, and waking a sleeping thread costs more than most of them), then sleep on a condvar.
#define _GNU_SOURCE
#include "anelm_kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

struct anelm_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic long generation;  // bumped for each job
    _Atomic long next;  // next task index to claim
    _Atomic int busy;  // workers still inside the current job
    _Atomic int stop;
    long count;
    anelm_task_fn fn;
    void *ctx;
};

static void drain(anelm_pool *p) {
    for (;;) {
        long i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->count) return;
        p->fn(p->ctx, i);
    }
}

static void *worker(void *arg) {
    anelm_pool *p = arg;
    long seen = 0;
    for (;;) {
        long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < 20000) {
                if (spins % 1024 == 0) sched_yield();
                else CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->lock);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        drain(p);
        atomic_fetch_sub_explicit(&p->busy, 1, memory_order_release);
    }
}

anelm_pool *anelm_pool_create(int threads) {
    anelm_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->workers = calloc((size_t)p->threads, sizeof(pthread_t));
    int started = 1;
    for (int i = 1; i < p->threads && p->workers; i++) {
        if (pthread_create(&p->workers[i], NULL, worker, p) != 0) break;
        started++;
    }
    p->threads = started;  // fewer threads than asked if the system refused some
    return p;
}

void anelm_pool_destroy(anelm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}

void anelm_pool_run(anelm_pool *p, long count, anelm_task_fn fn, void *ctx) {
    if (count <= 0) return;
    if (!p || p->threads == 1 || count == 1) {
        for (long i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    p->count = count;
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy, p->threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p);
    // Yield once the wait gets long: a descheduled worker (a loaded machine) must get the core back.
    for (long spins = 0; atomic_load_explicit(&p->busy, memory_order_acquire) > 0; spins++) {
        if (spins < 4096) CPU_RELAX();
        else sched_yield();
    }
}

int anelm_physical_cores(void) {
    // Linux: count distinct (physical id, core id) pairs; elsewhere the online CPU count.
    FILE *f = fopen("/proc/cpuinfo", "r");
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (!f) return online > 0 ? (int)online : 1;
    char line[256];
    int phys = -1, cores = 0;
    long seen[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int v;
        if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
        else if (sscanf(line, "core id : %d", &v) == 1) {
            long key = (long)phys * 65536 + v;
            int dup = 0;
            for (int i = 0; i < n; i++)
                if (seen[i] == key) {
                    dup = 1;
                    break;
                }
            if (!dup && n < 1024) {
                seen[n++] = key;
                cores++;
            }
        }
    }
    fclose(f);
    if (cores == 0) return online > 0 ? (int)online : 1;
    return cores;
}
