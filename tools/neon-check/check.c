// Compares every NEON kernel (kernels_neon.c) with the portable one, on arm64 or under qemu-aarch64 (see
// ./run). Each check runs the same inputs at ANELM_ISA_PORTABLE and at ANELM_ISA_NEON and prints the largest
// difference found; the exit status is 1 on any failure:
//   - the Swift tests testEveryISAMatchesPortable (KernelTests, QuantTests) replayed on their own inputs,
//     at their tolerance (1e-4·max(1, |portable|));
//   - matmul for every weight type over rows 1/7/33, awkward widths, 1–6 tokens, row ranges split as
//     Kernels.matmul splits them, random and extreme weights and activations: |Δ| ≤ 1e-5·Σ|w·x| (the
//     rounding any summation order may change), and on the Swift tests' kind of input the tolerance of
//     testMatmulEveryTypeAgainstDoubleReference against the double product;
//   - quantize_q16 and the f16/bf16 conversions bit for bit (NaN payloads aside), the vector kernels and
//     attention at the Swift tests' tolerances, and the vector exp's accuracy in ulps.
// Buffers end at a page followed by an inaccessible one, so a kernel reading or writing past its input
// faults. `trials N` instead estimates how often the two Swift tests would fail on fresh random inputs.
// Built for x86_64 (by hand: cc -O2 -ISources/CANELMKernels/include Sources/CANELMKernels/*.c check.c -lm
// -lpthread) it runs the same comparisons on the best x86 level (ANELM_ISA=avx2|avxvnni|avx512vnni picks another).
#include "anelm_kernels.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures;
static int fast_level;  // the level compared with portable: NEON on arm64 (an x86 level when built for x86, to compare)
#define FAIL(...)                \
    do {                         \
        if (failures++ < 40) {   \
            printf("FAIL: ");    \
            printf(__VA_ARGS__); \
            printf("\n");        \
        }                        \
    } while (0)

// MARK: random numbers, guarded buffers

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next(void) {  // splitmix64
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float uniform(float scale) { return ((float)(next() % 20001) / 10000 - 1) * scale; }  // as the Swift tests' random

// `bytes` of storage ending where an inaccessible page begins. Never freed: the checks are small.
static void *guarded(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (bytes + page - 1) / page * page;
    uint8_t *base = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect(base + span, page, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    return base + span - bytes;
}

static int limit(int level) {
    anelm_limit_isa(level);
    return anelm_isa_level();
}

// MARK: weight types

typedef struct {
    int type;
    const char *name;
    int block, bytes;
} type_info;
static const type_info types[] = {
    {ANELM_F32, "f32", 1, 4},       {ANELM_F16, "f16", 1, 2},       {ANELM_BF16, "bf16", 1, 2},     {ANELM_Q8_0, "q8_0", 32, 34},
    {ANELM_Q4_0, "q4_0", 32, 18},   {ANELM_Q4_1, "q4_1", 32, 20},   {ANELM_Q5_0, "q5_0", 32, 22},   {ANELM_Q5_1, "q5_1", 32, 24},
    {ANELM_Q4_K, "q4_k", 256, 144}, {ANELM_Q5_K, "q5_k", 256, 176}, {ANELM_Q6_K, "q6_k", 256, 210},
};
#define TYPES (int)(sizeof types / sizeof types[0])

static void put_half(uint8_t *p, float v) {
    uint16_t h = anelm_f32_to_f16(v);
    memcpy(p, &h, 2);
}

// One block of `t`. Mode 0: random bytes with small finite scales (as the Swift tests make them);
// 1: every quant byte 0x00; 2: every quant byte 0xff; 3: every quant byte 0x80 (Q8_0's −128, Q6_K's
// −128 scales); the scales of modes 1–3 are large (±60000 for d).
static void fill_block(const type_info *t, uint8_t *p, int mode) {
    if (t->block == 1) {
        float v = mode == 0 ? uniform(1) : mode == 1 ? 0 : mode == 2 ? -1 : 1e4f;
        if (t->type == ANELM_F32) memcpy(p, &v, 4);
        else if (t->type == ANELM_F16) put_half(p, v);
        else {
            uint32_t b;
            memcpy(&b, &v, 4);
            uint16_t h = (uint16_t)(b >> 16);
            memcpy(p, &h, 2);
        }
        return;
    }
    uint8_t fill = mode == 1 ? 0x00 : mode == 2 ? 0xff : 0x80;
    for (int i = 0; i < t->bytes; i++) p[i] = mode == 0 ? (uint8_t)next() : fill;
    float d = mode == 0 ? uniform(0.05f) : (next() & 1 ? 60000.0f : -60000.0f), m = mode == 0 ? uniform(0.05f) : 30000.0f;
    switch (t->type) {
    case ANELM_Q6_K: put_half(p + 208, d); break;
    case ANELM_Q4_1:
    case ANELM_Q5_1:
    case ANELM_Q4_K:
    case ANELM_Q5_K:
        put_half(p, d);
        put_half(p + 2, m);
        break;
    default: put_half(p, d); break;
    }
}

// MARK: matmul

// test: |Δ|/max(1, |portable|) on the Swift tests' inputs; conditioned: |Δ|/Σ|w·x| on all; reference: the
// error of the fast result against the double of the same quantized values, as a share of the Swift test's
// tolerance; plain_err, fast_err: |result − double|/max(1, |double|) of each on the Swift tests' inputs.
// over: how many outputs exceed 1e-4·max(1, |portable|).
typedef struct {
    double test, conditioned, reference, plain_err, fast_err;
    long compared, over;
} matmul_stats;
static matmul_stats stats[TYPES];

// Activations: mode 0 uniform in [-1, 1] (as the Swift tests); 1 awkward: blocks of wildly different
// magnitudes, zero blocks, ±max and denormal values.
static void fill_activations(float *x, long n, int mode) {
    for (long i = 0; i < n; i++) x[i] = uniform(1);
    if (mode == 0) return;
    for (long b = 0; b < n / 32; b++) {
        long k = (long)(next() % 6);
        float s = k == 0 ? 0 : k == 1 ? 1e-3f : k == 2 ? 1e3f : k == 3 ? 1e-30f : 1;
        for (long j = 0; j < 32; j++) x[b * 32 + j] *= s;
        if (k == 4) {
            x[b * 32] = 7;
            x[b * 32 + 1] = -7;
        }
    }
    for (long i = n / 32 * 32; i < n; i++) x[i] *= next() & 1 ? 1e3f : 1e-3f;
}

// Runs the rows [0, rows) as Kernels.matmul would (in tasks of `task` rows), into a guarded y that
// starts filled with a sentinel, and checks every entry was written.
static void run_matmul(const type_info *t, const uint8_t *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, long tokens, long rows,
                       long task, float *y) {
    for (long i = 0; i < tokens * rows; i++) y[i] = -12345.0f;
    for (long r = 0; r < rows; r += task)
        anelm_matmul_rows(t->type, w, row_bytes, cols, t->block == 1 ? x : NULL, t->block == 1 ? NULL : xq, NULL, tokens, y, rows, r,
                          r + task < rows ? r + task : rows);
}

static void check_matmul(int ti, long rows, long cols, long tokens, int wmode, int xmode, int extreme_q) {
    const type_info *t = &types[ti];
    size_t row_bytes = (size_t)(cols / t->block * t->bytes);
    uint8_t *w = guarded(row_bytes * (size_t)rows);
    for (long r = 0; r < rows; r++)
        for (long b = 0; b < cols / t->block; b++) {
            int mode = wmode == 0 ? 0 : (int)(next() % 4);
            fill_block(t, w + (size_t)r * row_bytes + (size_t)(b * t->bytes), mode);
        }
    float *x = guarded(sizeof(float) * (size_t)(tokens * cols));
    fill_activations(x, tokens * cols, xmode);
    anelm_block_q16 *xq = NULL;
    if (t->block > 1) {
        xq = guarded(sizeof(anelm_block_q16) * (size_t)(tokens * cols / 32));
        limit(ANELM_ISA_PORTABLE);
        for (long i = 0; i < tokens; i++) anelm_quantize_q16(x + i * cols, xq + i * (cols / 32), cols);
        if (extreme_q)  // the int16 range's ends (−32768 only comes from NaN inputs), for the int32 partial sums
            for (long b = 0; b < tokens * cols / 32; b++) {
                int sum = 0;
                for (int j = 0; j < 32; j++) {
                    xq[b].q[j] = (int16_t)(b & 1 ? -32768 : 32767);
                    sum += xq[b].q[j];
                }
                xq[b].d = 1e-4f;
                xq[b].s = xq[b].d * (float)sum;
            }
    }
    float *plain = guarded(sizeof(float) * (size_t)(tokens * rows)), *fast = guarded(sizeof(float) * (size_t)(tokens * rows));
    long task = rows <= 2 ? rows : 1 + (long)(next() % (unsigned long)rows);
    limit(ANELM_ISA_PORTABLE);
    run_matmul(t, w, row_bytes, cols, x, xq, tokens, rows, task, plain);
    if (limit(-1) != fast_level) {
        FAIL("not at the level under test");
        exit(1);
    }
    run_matmul(t, w, row_bytes, cols, x, xq, tokens, rows, task, fast);

    // Dequantized weights and activations for the magnitude Σ|w·x| and the double reference.
    float *dense = malloc(sizeof(float) * (size_t)cols), *xd = malloc(sizeof(float) * (size_t)cols);
    matmul_stats *st = &stats[ti];
    for (long r = 0; r < rows; r++) {
        anelm_dequantize(t->type, w + (size_t)r * row_bytes, dense, cols);
        for (long i = 0; i < tokens; i++) {
            if (t->block > 1)
                for (long c = 0; c < cols; c++) xd[c] = xq[i * (cols / 32) + c / 32].d * (float)xq[i * (cols / 32) + c / 32].q[c % 32];
            else memcpy(xd, x + i * cols, sizeof(float) * (size_t)cols);
            double exact = 0, magnitude = 0, wsum = 0;
            for (long c = 0; c < cols; c++) {
                exact += (double)dense[c] * xd[c];
                magnitude += fabs((double)dense[c] * xd[c]);
                wsum += fabs((double)dense[c]);
            }
            float p = plain[i * rows + r], f = fast[i * rows + r];
            if (p == -12345.0f || f == -12345.0f) {
                FAIL("%s %ldx%ld t%ld r%ld: not written", t->name, rows, cols, i, r);
                continue;
            }
            if (isnan(p) || isnan(f) || isinf(p) || isinf(f)) {
                if (!(isnan(p) && isnan(f)) && p != f) FAIL("%s %ldx%ld t%ld r%ld: %g vs portable %g", t->name, rows, cols, i, r, f, p);
                continue;
            }
            double diff = fabs((double)f - p);
            st->compared++;
            // The error relative to the terms' magnitude: what rounding in another order can change.
            double cond = magnitude > 0 ? diff / magnitude : diff;
            if (cond > st->conditioned) st->conditioned = cond;
            if (cond > 1e-5) FAIL("%s %ldx%ld t%ld r%ld: %.9g vs portable %.9g (%.3g of the magnitude %.3g)", t->name, rows, cols, i, r, f, p, cond, magnitude);
            if (wmode == 0 && xmode == 0 && !extreme_q) {
                // The Swift tests' inputs: testEveryISAMatchesPortable's tolerance, and
                // testMatmulEveryTypeAgainstDoubleReference's for the NEON result.
                // The ISA test's measure, reported, not checked: where the terms cancel to |y| ≈ 1, float
                // rounding in any order is ~1e-4 for the large K-quant weights, and x86's kernels exceed it on
                // the same outputs (see swift_test_trials; replay_swift_tests checks the tests' own inputs).
                double rel = diff / fmax(1, fabs((double)p));
                if (rel > st->test) st->test = rel;
                if (rel > 1e-4) st->over++;
                st->plain_err = fmax(st->plain_err, fabs((double)p - exact) / fmax(1, fabs(exact)));
                st->fast_err = fmax(st->fast_err, fabs((double)f - exact) / fmax(1, fabs(exact)));
                double tol = t->block > 1 ? wsum / 32767 * 0.51 + 1e-4 : 1e-4 * fmax(1, wsum), err = fabs((double)f - exact);
                if (err / tol > st->reference) st->reference = err / tol;
                if (err > tol) FAIL("%s %ldx%ld t%ld r%ld: %.9g vs exact %.9g", t->name, rows, cols, i, r, f, exact);
            }
        }
    }
    free(dense);
    free(xd);
}

static void check_matmuls(void) {
    static const long float_cols[] = {1, 4, 7, 16, 23, 33, 288, 1000, 4100}, q_cols[] = {32, 64, 96, 288, 1024, 16384}, k_cols[] = {256, 512, 768, 2048};
    static const long row_counts[] = {1, 7, 33};
    for (int ti = 0; ti < TYPES; ti++) {
        const long *cols = types[ti].block == 1 ? float_cols : types[ti].block == 32 ? q_cols : k_cols;
        int ncols = types[ti].block == 1 ? 9 : types[ti].block == 32 ? 6 : 4;
        for (int c = 0; c < ncols; c++)
            for (int r = 0; r < 3; r++) {
                long rows = row_counts[r];
                if (cols[c] >= 4096 && rows > 7) rows = 3;  // rows of ≥ 16 KB: one-row chunks
                for (long tokens = 1; tokens <= 6; tokens++) {
                    check_matmul(ti, rows, cols[c], tokens, 0, 0, 0);
                    check_matmul(ti, rows, cols[c], tokens, 1, 1, 0);
                    if (types[ti].block > 1 && tokens <= 5) check_matmul(ti, rows, cols[c], tokens, 1, 0, 1);
                }
            }
        printf("matmul %-5s %5ld outputs: |Δ|/Σ|w·x| %.2e; Swift-test inputs: |Δ|/max(1,|portable|) %.2e (%ld over 1e-4), "
               "|error|/max(1,|exact|) portable %.2e, fast %.2e, fast vs double %.3f of the Swift tolerance\n",
               types[ti].name, stats[ti].compared, stats[ti].conditioned, stats[ti].test, stats[ti].over, stats[ti].plain_err, stats[ti].fast_err,
               stats[ti].reference);
    }
    // Tokens ≥ 4 with a zero-row range and the NULL activations of the other kind must not touch y.
    float y[4] = {1, 2, 3, 4};
    anelm_matmul_rows(ANELM_Q8_0, NULL, 34, 32, NULL, NULL, NULL, 4, y, 1, 0, 0);
    if (y[0] != 1 || y[3] != 4) FAIL("empty row range wrote y");
}

// The two testEveryISAMatchesPortable tests as written (KernelTests: every type, its shapes, 5 tokens;
// QuantTests: Q5_0…Q6_K, its shapes, 1, 3, 6 tokens; tolerance 1e-4·max(1, |portable|) on every output),
// repeated with fresh random inputs: how often would they fail? Where the terms cancel to |y| ≈ 1, float
// rounding in any order reaches ~1e-4 for the large K-quant weights, so this is a rate, not a check; run
// it on x86 too (see ./run) to compare with the AVX2 kernels.
static void swift_test_trials(int trials) {
    static const long kernel_shapes[][2] = {{5, 32}, {9, 288}, {2, 1000}, {1, 1}, {3, 7}, {4, 23}};
    static const long quant_shapes[][2] = {{1, 256}, {9, 768}, {2, 2048}, {37, 512}};
    static const long quant_tokens[] = {1, 3, 6};
    long failed[2][TYPES] = {{0}}, outputs[2][TYPES] = {{0}}, over[2][TYPES] = {{0}};
    for (int trial = 0; trial < trials; trial++)
        for (int test = 0; test < 2; test++)
            for (int ti = 0; ti < TYPES; ti++) {
                const type_info *t = &types[ti];
                if (test == 1 && !(t->type == ANELM_Q5_0 || t->type == ANELM_Q5_1 || t->block == 256)) continue;
                int any = 0;
                for (int si = 0; si < (test ? 4 : 6); si++)
                    for (int k = 0; k < (test ? 3 : 1); k++) {
                        long rows = test ? quant_shapes[si][0] : kernel_shapes[si][0], cols = test ? quant_shapes[si][1] : kernel_shapes[si][1];
                        long tokens = test ? quant_tokens[k] : 5;
                        if (test == 0 && si == 2) cols -= cols % t->block;  // (2, 1000 − 1000 % blockSize)
                        if (cols % t->block != 0) continue;  // `where cols % type.blockSize == 0`
                        size_t row_bytes = (size_t)(cols / t->block * t->bytes);
                        uint8_t *w = malloc(row_bytes * (size_t)rows);
                        for (size_t b = 0; b < (size_t)rows * (size_t)(cols / t->block); b++) fill_block(t, w + b * (size_t)t->bytes, 0);
                        float *x = malloc(sizeof(float) * (size_t)(tokens * cols));
                        fill_activations(x, tokens * cols, 0);
                        anelm_block_q16 *xq = malloc(sizeof(anelm_block_q16) * (size_t)(tokens * cols / 32 + 1));
                        for (long i = 0; i < tokens && t->block > 1; i++) anelm_quantize_q16(x + i * cols, xq + i * (cols / 32), cols);
                        float *plain = malloc(sizeof(float) * (size_t)(tokens * rows)), *fast = malloc(sizeof(float) * (size_t)(tokens * rows));
                        limit(ANELM_ISA_PORTABLE);
                        run_matmul(t, w, row_bytes, cols, x, xq, tokens, rows, rows, plain);
                        limit(-1);
                        run_matmul(t, w, row_bytes, cols, x, xq, tokens, rows, rows, fast);
                        for (long i = 0; i < tokens * rows; i++, outputs[test][ti]++)
                            if (!(fabs((double)fast[i] - plain[i]) <= 1e-4 * fmax(1, fabs((double)plain[i])))) {
                                any = 1;
                                over[test][ti]++;
                            }
                        free(w);
                        free(x);
                        free(xq);
                        free(plain);
                        free(fast);
                    }
                failed[test][ti] += any;
            }
    for (int test = 0; test < 2; test++)
        for (int ti = 0; ti < TYPES; ti++)
            if (outputs[test][ti])
                printf("%s.testEveryISAMatchesPortable %-5s: %ld of %d runs would fail (%ld of %ld outputs beyond 1e-4)\n", test ? "QuantTests" : "KernelTests",
                       types[ti].name, failed[test][ti], trials, over[test][ti], outputs[test][ti]);
}

// The same two tests replayed exactly: their SeededGenerator (SplitMix64, as here) from a fresh instance
// per test method (seed 7 in KernelTests, 11 in QuantTests), drawn in the same order into the same
// weights and activations, so these are the comparisons the Swift tests make on an arm64 machine.
static uint64_t swift_rng;
static uint64_t swift_next(void) {
    uint64_t saved = rng;
    rng = swift_rng;
    uint64_t v = next();
    swift_rng = rng;
    rng = saved;
    return v;
}
static float kernel_tests_random(float scale) { return ((float)(swift_next() % 20001) / 10000 - 1) * scale; }
static float quant_tests_random(void) { return (float)((long)(swift_next() % 20001) - 10000) / 10000; }

static void replay_swift_tests(void) {
    static const int all_cases[] = {ANELM_F32,  ANELM_F16,  ANELM_Q4_0, ANELM_Q4_1, ANELM_Q5_0, ANELM_Q5_1,
                                    ANELM_Q8_0, ANELM_Q4_K, ANELM_Q5_K, ANELM_Q6_K, ANELM_BF16};
    static const int new_types[] = {ANELM_Q5_0, ANELM_Q5_1, ANELM_Q4_K, ANELM_Q5_K, ANELM_Q6_K};
    static const long kernel_shapes[][2] = {{5, 32}, {9, 288}, {2, 1000}, {1, 1}, {3, 7}, {4, 23}};
    static const long quant_shapes[][2] = {{1, 256}, {9, 768}, {2, 2048}, {37, 512}};
    for (int test = 0; test < 2; test++) {
        swift_rng = test ? 11 : 7;
        double worst = 0;
        const char *worst_type = "";
        for (int n = 0; n < (test ? 5 : 11); n++) {
            const type_info *t = NULL;
            for (int ti = 0; ti < TYPES; ti++)
                if (types[ti].type == (test ? new_types[n] : all_cases[n])) t = &types[ti];
            for (int si = 0; si < 4 + 2 * !test; si++) {
                long rows = test ? quant_shapes[si][0] : kernel_shapes[si][0], cols = test ? quant_shapes[si][1] : kernel_shapes[si][1];
                if (!test && si == 2) cols -= cols % t->block;
                if (cols % t->block) continue;
                size_t row_bytes = (size_t)(cols / t->block * t->bytes), blocks = (size_t)(rows * cols / t->block);
                uint8_t *w = malloc(row_bytes * (size_t)rows), *p = w;
                for (size_t b = 0; b < blocks; b++, p += t->bytes) {
                    if (test) {  // QuantTests.randomBlocks
                        for (int i = 0; i < t->bytes; i++) p[i] = (uint8_t)swift_next();
                        int offsets[2] = {t->type == ANELM_Q6_K ? 208 : 0, 2},
                            halves = t->type == ANELM_Q5_1 || t->type == ANELM_Q4_K || t->type == ANELM_Q5_K ? 2 : 1;
                        for (int h = 0; h < halves; h++) put_half(p + offsets[h], (float)((long)(swift_next() % 20001) - 10000) / 10000 * 0.05f);
                    } else if (t->type == ANELM_F32) {  // KernelTests.randomBlocks
                        float v = kernel_tests_random(1);
                        memcpy(p, &v, 4);
                    } else if (t->block == 1) {
                        float v = kernel_tests_random(1);
                        uint32_t bits;
                        memcpy(&bits, &v, 4);
                        uint16_t h = t->type == ANELM_F16 ? anelm_f32_to_f16(v) : (uint16_t)(bits >> 16);
                        memcpy(p, &h, 2);
                    } else if (t->type == ANELM_Q6_K) {
                        for (int i = 0; i < t->bytes - 2; i++) p[i] = (uint8_t)swift_next();
                        put_half(p + 208, kernel_tests_random(0.05f));
                    } else {
                        int headers = t->type == ANELM_Q4_1 || t->type == ANELM_Q5_1 || t->type == ANELM_Q4_K || t->type == ANELM_Q5_K ? 2 : 1;
                        for (int h = 0; h < headers; h++) put_half(p + 2 * h, kernel_tests_random(0.05f));
                        for (int i = 2 * headers; i < t->bytes; i++) p[i] = (uint8_t)swift_next();
                    }
                }
                for (int k = 0; k < (test ? 3 : 1); k++) {
                    long tokens = test ? (long[]){1, 3, 6}[k] : 5;
                    float *x = malloc(sizeof(float) * (size_t)(tokens * cols));
                    for (long i = 0; i < tokens * cols; i++) x[i] = test ? quant_tests_random() : kernel_tests_random(1);
                    anelm_block_q16 *xq = malloc(sizeof(anelm_block_q16) * (size_t)(tokens * cols / 32 + 1));
                    float *plain = malloc(sizeof(float) * (size_t)(tokens * rows)), *fast = malloc(sizeof(float) * (size_t)(tokens * rows));
                    for (int level = 0; level < 2; level++) {  // each level quantizes the activations itself, as Kernels.matmul
                        limit(level ? -1 : ANELM_ISA_PORTABLE);
                        for (long i = 0; i < tokens && t->block > 1; i++) anelm_quantize_q16(x + i * cols, xq + i * (cols / 32), cols);
                        run_matmul(t, w, row_bytes, cols, x, xq, tokens, rows, rows, level ? fast : plain);
                    }
                    for (long i = 0; i < tokens * rows; i++) {
                        double rel = fabs((double)fast[i] - plain[i]) / fmax(1, fabs((double)plain[i]));
                        if (rel > worst) {
                            worst = rel;
                            worst_type = t->name;
                        }
                        if (!(rel <= 1e-4))
                            FAIL("%s.testEveryISAMatchesPortable %s %ldx%ld tokens %ld output %ld: %.9g vs portable %.9g", test ? "QuantTests" : "KernelTests",
                                 t->name, rows, cols, tokens, i, fast[i], plain[i]);
                    }
                    free(x);
                    free(xq);
                    free(plain);
                    free(fast);
                }
                free(w);
            }
        }
        printf("%s.testEveryISAMatchesPortable replayed: max |Δ|/max(1,|portable|) %.3e (%s; tolerance 1e-4)\n", test ? "QuantTests" : "KernelTests", worst,
               worst_type);
    }
}

// MARK: quantization, conversions

static void check_quantize(void) {
    long cases = 0, differ = 0;
    for (int round = 0; round < 400; round++) {
        long n = 32 * (1 + (long)(next() % 40));
        float *x = guarded(sizeof(float) * (size_t)n);
        for (long i = 0; i < n; i++) x[i] = uniform(3);
        for (long b = 0; b < n / 32; b++) {
            float *v = x + b * 32;
            switch (next() % 12) {
            case 0:
                for (int j = 0; j < 32; j++) v[j] = 0;
                break;
            case 1:
                v[0] = 3;
                v[1] = -3;
                break;  // the ends of the int16 range
            case 2:
                for (int j = 0; j < 32; j++) v[j] = (float)(j - 16) + 0.5f;
                v[5] = 32767;
                break;  // exact ties: d = 1
            case 3:
                for (int j = 0; j < 32; j++) v[j] = uniform(1e-40f);
                break;  // denormal: d underflows or 1/d overflows
            case 4: v[next() % 32] = NAN; break;
            case 5: v[next() % 32] = INFINITY; break;
            case 6: v[next() % 32] = -INFINITY; break;
            case 7:
                for (int j = 0; j < 32; j++) v[j] = NAN;
                break;
            case 8:
                for (int j = 0; j < 32; j++) v[j] = uniform(3e38f);
                break;
            case 9:
                for (int j = 0; j < 32; j++) v[j] = j & 1 ? -0.0f : 0.0f;
                v[3] = 1e-45f;
                break;
            case 10: v[0] = -3.5e-41f; break;  // amax a denormal whose inverse overflows
            default: break;
            }
        }
        anelm_block_q16 *a = guarded(sizeof(anelm_block_q16) * (size_t)(n / 32)), *b = guarded(sizeof(anelm_block_q16) * (size_t)(n / 32));
        memset(a, 0x55, sizeof(anelm_block_q16) * (size_t)(n / 32));
        memset(b, 0xaa, sizeof(anelm_block_q16) * (size_t)(n / 32));
        limit(ANELM_ISA_PORTABLE);
        anelm_quantize_q16(x, a, n);
        limit(-1);
        anelm_quantize_q16(x, b, n);
        for (long i = 0; i < n / 32; i++, cases++)
            if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) {
                differ++;
                FAIL("quantize_q16 block %ld of %ld differs: d %a/%a s %a/%a", i, n / 32, b[i].d, a[i].d, b[i].s, a[i].s);
                for (int j = 0; j < 32; j++)
                    if (a[i].q[j] != b[i].q[j]) {
                        printf("  q[%d] %d vs portable %d (x %a)\n", j, b[i].q[j], a[i].q[j], x[i * 32 + j]);
                        break;
                    }
            }
    }
    printf("quantize_q16: %ld blocks, %ld not bit for bit\n", cases, differ);
}

static void check_conversions(void) {
    long bad = 0;
    static const long lengths[] = {1, 3, 7, 8, 9, 15, 17, 65536 + 7};
    for (int li = 0; li < 8; li++) {
        long len = lengths[li];
        uint16_t *h = guarded(2 * (size_t)len);
        float *p = guarded(4 * (size_t)len), *f = guarded(4 * (size_t)len);
        for (long i = 0; i < len; i++)
            h[i] = (uint16_t)((unsigned long)i * 40503u + (unsigned long)li);  // every pattern at the longest (40503 is odd), scrambled
        for (int kind = 0; kind < 2; kind++) {
            limit(ANELM_ISA_PORTABLE);
            kind ? anelm_convert_bf16_to_f32(h, p, len) : anelm_convert_f16_to_f32(h, p, len);
            limit(-1);
            kind ? anelm_convert_bf16_to_f32(h, f, len) : anelm_convert_f16_to_f32(h, f, len);
            for (long i = 0; i < len; i++)
                if (isnan(p[i]) ? !isnan(f[i]) : memcmp(&p[i], &f[i], 4) != 0) {
                    if (bad++ < 5) FAIL("%s→f32 %04x: %a vs portable %a", kind ? "bf16" : "f16", h[i], f[i], p[i]);
                }
        }
    }
    // f32 → f16: ties at every exponent, subnormals, overflow, infinities, random values.
    long n = 200003;
    for (long len = 1; len < 18; len++) {  // the short lengths' tails, in guarded buffers
        float *xs = guarded(4 * (size_t)len);
        uint16_t *hs = guarded(2 * (size_t)len);
        for (long i = 0; i < len; i++) xs[i] = uniform(70000);
        limit(-1);
        anelm_convert_f32_to_f16(xs, hs, len);
        for (long i = 0; i < len; i++)
            if (hs[i] != anelm_f32_to_f16(xs[i])) FAIL("f32→f16 length %ld, %a: %04x", len, xs[i], hs[i]);
    }
    float *x = guarded(sizeof(float) * (size_t)n);
    uint16_t *a = guarded(2 * (size_t)n), *b = guarded(2 * (size_t)n);
    for (long i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)next();
        if (i % 3 == 0) bits = (bits & 0xffffe000u) | 0x1000u;  // exactly halfway between two normal halves
        if (i % 7 == 0) bits = (bits & 0x807fffffu) | ((uint32_t)(102 + next() % 12) << 23);  // the subnormal range
        memcpy(&x[i], &bits, 4);
    }
    static const float edges[] = {0,
                                  -0.0f,
                                  1,
                                  65504,
                                  65519,
                                  65520,
                                  -65520,
                                  1e-8f,
                                  6e-5f,
                                  5.9604645e-8f,
                                  2.9802322e-8f,
                                  8.940697e-8f,
                                  INFINITY,
                                  -INFINITY,
                                  1.0009765625f,
                                  1.00048828125f,
                                  3e38f};
    memcpy(x, edges, sizeof edges);
    limit(ANELM_ISA_PORTABLE);
    anelm_convert_f32_to_f16(x, a, n);
    limit(-1);
    anelm_convert_f32_to_f16(x, b, n);
    long nans = 0;
    for (long i = 0; i < n; i++) {
        if (isnan(x[i])) {  // the payload may differ (as with AVX2's vcvtps2ph); both must be NaN
            nans++;
            if ((a[i] & 0x7c00) != 0x7c00 || !(a[i] & 0x3ff) || (b[i] & 0x7c00) != 0x7c00 || !(b[i] & 0x3ff))
                FAIL("f32→f16 NaN %a: %04x vs %04x", x[i], b[i], a[i]);
        } else if (a[i] != b[i]) {
            if (bad++ < 10) FAIL("f32→f16 %a: %04x vs portable %04x", x[i], b[i], a[i]);
        }
    }
    printf("conversions: f16→f32 and bf16→f32 every pattern, f32→f16 %ld values (%ld NaN: both NaN), bit for bit\n", n, nans);
}

// MARK: vector kernels

static double max_d(double a, double b) { return a > b ? a : b; }

static void check_vectors(void) {
    static const long sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 577, 1000, 4099};
    double dot_rel = 0, axpy_rel = 0, softmax_abs = 0, softmax_ref = 0, act_rel = 0, act_ref = 0;
    for (int si = 0; si < (int)(sizeof sizes / sizeof sizes[0]); si++) {
        long n = sizes[si];
        for (int round = 0; round < 4; round++) {
            float *a = guarded(sizeof(float) * (size_t)n + 4), *b = guarded(sizeof(float) * (size_t)n + 4);
            float *y0 = guarded(sizeof(float) * (size_t)n + 4), *y1 = guarded(sizeof(float) * (size_t)n + 4);
            float scale = round == 3 ? 1e3f : 1;
            for (long i = 0; i < n; i++) {
                a[i] = uniform(scale);
                b[i] = uniform(1);
            }

            limit(ANELM_ISA_PORTABLE);
            float dp = anelm_dot(a, b, n);
            limit(-1);
            float df = anelm_dot(a, b, n);
            double magnitude = 0, exact = 0;
            for (long i = 0; i < n; i++) {
                magnitude += fabs((double)a[i] * b[i]);
                exact += (double)a[i] * b[i];
            }
            double rel = magnitude > 0 ? fabs((double)df - dp) / magnitude : fabs((double)df - dp);
            dot_rel = max_d(dot_rel, rel);
            if (rel > 1e-5) FAIL("dot n %ld: %.9g vs portable %.9g", n, df, dp);
            if (round < 3 && n <= 1000 && fabs(df - exact) > 1e-5) FAIL("dot n %ld: %.9g vs exact %.9g", n, df, exact);

            for (long i = 0; i < n; i++) y0[i] = y1[i] = b[i];
            limit(ANELM_ISA_PORTABLE);
            anelm_axpy(0.37f, a, y0, n);
            limit(-1);
            anelm_axpy(0.37f, a, y1, n);
            for (long i = 0; i < n; i++) {
                double r = fabs((double)y1[i] - y0[i]) / (fabs(0.37 * a[i]) + fabs(b[i]) + 1e-30);
                axpy_rel = max_d(axpy_rel, r);
                if (r > 2e-7) FAIL("axpy n %ld i %ld: %.9g vs portable %.9g", n, i, y1[i], y0[i]);
            }

            if (n == 0) continue;
            // Softmax: the Swift test's scores (uniform·30) and wider ones (the exp clamp's tails).
            float spread = round == 0 ? 30 : round == 1 ? 1 : round == 2 ? 200 : 1e4f;
            for (long i = 0; i < n; i++) y0[i] = y1[i] = uniform(spread);
            limit(ANELM_ISA_PORTABLE);
            float lse0 = anelm_softmax(y0, n);
            limit(-1);
            float lse1 = anelm_softmax(y1, n);
            if (!(fabs((double)lse1 - lse0) <= 1e-5 * (1 + fabs(lse0)))) FAIL("softmax n %ld: log-sum-exp %.9g vs portable %.9g", n, lse1, lse0);
            for (long i = 0; i < n; i++) {
                double d = fabs((double)y1[i] - y0[i]);
                softmax_abs = max_d(softmax_abs, d);
                if (!(d <= 1e-6)) FAIL("softmax n %ld i %ld: %.9g vs portable %.9g", n, i, y1[i], y0[i]);
            }
            // The Swift test's check against the double reference (tolerance 1e-6) on its own scores.
            if (round == 0) {
                for (long i = 0; i < n; i++) y1[i] = uniform(30);
                double mm = -INFINITY, tt = 0;
                for (long i = 0; i < n; i++) mm = fmax(mm, y1[i]);
                for (long i = 0; i < n; i++) tt += exp(y1[i] - mm);
                for (long i = 0; i < n; i++) y0[i] = y1[i];
                anelm_softmax(y1, n);
                for (long i = 0; i < n; i++) {
                    double e = exp(y0[i] - mm) / tt, d = fabs(y1[i] - e);
                    softmax_ref = max_d(softmax_ref, d);
                    if (d > 1e-6) FAIL("softmax n %ld i %ld: %.9g vs exact %.9g", n, i, y1[i], e);
                }
            }

            // SiLU and GELU (tanh): against portable everywhere, and against the Swift test's double
            // reference and tolerance on its range (uniform·30).
            for (int act = 0; act < 2; act++) {
                float range = round == 0 ? 30 : round == 1 ? 3 : round == 2 ? 100 : 1e4f;
                for (long i = 0; i < n; i++) { y0[i] = y1[i] = a[i] = uniform(range); }
                limit(ANELM_ISA_PORTABLE);
                act ? anelm_gelu_tanh_mul(y0, b, n) : anelm_silu_mul(y0, b, n);
                limit(-1);
                act ? anelm_gelu_tanh_mul(y1, b, n) : anelm_silu_mul(y1, b, n);
                for (long i = 0; i < n; i++) {
                    double x = a[i], z = act ? 2 * 0.7978845608028654 * (x + 0.044715 * x * x * x) : x;
                    double tol = 3e-7 * (fabs(z) + 2) * fabs((double)y0[i]) + 1e-36;
                    double d = fabs((double)y1[i] - y0[i]);
                    // Beyond the clamp the NEON (and AVX2) exp stops at e^±88 where expf reaches 0 or ∞:
                    // results of ~1e-37·|x| instead of 0.
                    if (fabs(z) > 87) tol += 1e-37 * fabs(x) * fabs(b[i]) * 2;
                    act_rel = max_d(act_rel, d / (fabs((double)y0[i]) + 1e-30));
                    if (!(d <= tol)) FAIL("%s(%g) n %ld: %.9g vs portable %.9g", act ? "gelu_tanh" : "silu", a[i], n, y1[i], y0[i]);
                    if (round == 0) {
                        double expected = x / (1 + exp(-z)) * b[i], e = fabs(y1[i] - expected), t = 3e-7 * (fabs(z) + 2) * fabs(expected) + 1e-36;
                        act_ref = max_d(act_ref, e / t);
                        if (e > t) FAIL("%s(%g): %.9g vs exact %.9g", act ? "gelu_tanh" : "silu", x, y1[i], expected);
                    }
                }
            }
        }
    }
    // The vectorized exp itself: silu(x)·1 = x·σ(x) with σ(x) ≈ e^x for x ≪ 0 carries exp's relative error (plus
    // the rounding of 1 + e^−x, the division and the multiply); in ulps of the result against double, for
    // the portable expf and the vector one.
    double ulps[2] = {0, 0};
    {
        long m = 20000;
        float *g = guarded(4 * (size_t)m), *ones = guarded(4 * (size_t)m), *xs = guarded(4 * (size_t)m);
        for (long i = 0; i < m; i++) {
            xs[i] = -87 * (float)(next() % 1000001) / 1000000;
            ones[i] = 1;
        }
        for (int level = 0; level < 2; level++) {
            memcpy(g, xs, 4 * (size_t)m);
            limit(level ? -1 : ANELM_ISA_PORTABLE);
            anelm_silu_mul(g, ones, m);
            for (long i = 0; i < m; i++) {
                double x = xs[i], e = x / (1 + exp(-x)), ulp = ldexp(1, ilogb(e) - 23);
                if (fabs(e) < 1.2e-38) continue;  // denormal results: ulps lose meaning
                ulps[level] = max_d(ulps[level], fabs(g[i] - e) / ulp);
            }
        }
        if (ulps[1] > 4) FAIL("silu on [-87, 0]: %.2f ulp (portable %.2f)", ulps[1], ulps[0]);
    }
    printf("exp through silu on [-87, 0]: max error %.2f ulp (portable expf %.2f; limit 4)\n", ulps[1], ulps[0]);
    printf("dot: max |Δ|/Σ|a·b| %.2e (1e-5); axpy: max |Δ|/(|a·x|+|y|) %.2e (2e-7)\n", dot_rel, axpy_rel);
    printf("softmax: max |Δ| %.2e (1e-6), vs double %.2e (1e-6)\n", softmax_abs, softmax_ref);
    printf("silu, gelu_tanh: max |Δ|/|portable| %.2e; vs double %.2f of the Swift tolerance\n", act_rel, act_ref);
}

// MARK: attention

static void check_attention(void) {
    static const long cases[][4] = {{1, 16, 1, 16}, {3, 64, 33, 192}, {4, 24, 7, 48},      {2, 256, 5, 256}, {7, 8, 64, 56},
                                    {1, 4, 3, 4},   {2, 12, 9, 12},   {4, 128, 100, 1024}, {2, 6, 5, 6},     {3, 20, 1, 40}};
    double worst = 0, worst_ref = 0;
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        long group = cases[c][0], head_dim = cases[c][1], count = cases[c][2], stride = cases[c][3];
        for (int kv = 0; kv < 2; kv++)
            for (int capped = 0; capped < 2; capped++) {
                float softcap = capped ? 3 : 0, scale = 1 / sqrtf((float)head_dim);
                float *q = guarded(sizeof(float) * (size_t)(group * head_dim));
                for (long i = 0; i < group * head_dim; i++) q[i] = uniform(2);
                long n = count * stride;
                float *kf = malloc(sizeof(float) * (size_t)n), *vf = malloc(sizeof(float) * (size_t)n);
                for (long i = 0; i < n; i++) {
                    kf[i] = uniform(2);
                    vf[i] = uniform(1);
                }
                void *keys, *values;
                if (kv) {
                    uint16_t *kh = guarded(2 * (size_t)n), *vh = guarded(2 * (size_t)n);
                    for (long i = 0; i < n; i++) {
                        kh[i] = anelm_f32_to_f16(kf[i]);
                        vh[i] = anelm_f32_to_f16(vf[i]);
                        kf[i] = anelm_f16_to_f32(kh[i]);
                        vf[i] = anelm_f16_to_f32(vh[i]);
                    }
                    keys = kh;
                    values = vh;
                } else {
                    float *k2 = guarded(sizeof(float) * (size_t)n), *v2 = guarded(sizeof(float) * (size_t)n);
                    memcpy(k2, kf, sizeof(float) * (size_t)n);
                    memcpy(v2, vf, sizeof(float) * (size_t)n);
                    keys = k2;
                    values = v2;
                }
                size_t scratch_n = (size_t)(group * count + head_dim);
                float *scratch = guarded(sizeof(float) * scratch_n);
                float *p = guarded(sizeof(float) * (size_t)(group * head_dim)), *f = guarded(sizeof(float) * (size_t)(group * head_dim));
                limit(ANELM_ISA_PORTABLE);
                anelm_attention(q, group, head_dim, keys, values, kv ? ANELM_F16 : ANELM_F32, stride, count, scale, softcap, scratch, p, NULL);
                limit(-1);
                anelm_attention(q, group, head_dim, keys, values, kv ? ANELM_F16 : ANELM_F32, stride, count, scale, softcap, scratch, f, NULL);
                double *s = malloc(sizeof(double) * (size_t)count);
                for (long g = 0; g < group; g++) {
                    double m = -INFINITY, total = 0;
                    for (long j = 0; j < count; j++) {
                        double d = 0;
                        for (long i = 0; i < head_dim; i++) d += (double)q[g * head_dim + i] * kf[j * stride + i];
                        d *= scale;
                        s[j] = softcap > 0 ? tanh(d / softcap) * softcap : d;
                        m = fmax(m, s[j]);
                    }
                    for (long j = 0; j < count; j++) {
                        s[j] = exp(s[j] - m);
                        total += s[j];
                    }
                    for (long i = 0; i < head_dim; i++) {
                        double expected = 0;
                        for (long j = 0; j < count; j++) expected += s[j] / total * vf[j * stride + i];
                        double d = fabs((double)f[g * head_dim + i] - p[g * head_dim + i]), e = fabs(f[g * head_dim + i] - expected);
                        worst = max_d(worst, d);
                        worst_ref = max_d(worst_ref, e);
                        if (d > 1e-5 || e > 1e-5)
                            FAIL("attention group %ld dim %ld count %ld %s cap %g: %.9g vs portable %.9g, exact %.9g", group, head_dim, count,
                                 kv ? "f16" : "f32", softcap, f[g * head_dim + i], p[g * head_dim + i], expected);
                    }
                }
                free(s);
                free(kf);
                free(vf);
            }
    }
    printf("attention: max |Δ| %.2e vs portable, %.2e vs double (1e-5 each)\n", worst, worst_ref);
}

int main(int argc, char **argv) {
    int trials = argc > 2 && strcmp(argv[1], "trials") == 0 ? atoi(argv[2]) : 0;
    if (argc > 1 && !trials) rng = strtoull(argv[1], NULL, 0);
    printf("seed %#llx\n", (unsigned long long)rng);
    fast_level = limit(-1);
#if defined(__aarch64__)
    // The levels on arm64: NEON, and portable under any lower cap (x86's levels do not exist here).
    if (fast_level != ANELM_ISA_NEON) {
        printf("FAIL: level %d, not NEON\n", fast_level);
        return 1;
    }
    if (anelm_uses_avx2()) FAIL("anelm_uses_avx2() at the NEON level");
    if (limit(ANELM_ISA_AVX512VNNI) != ANELM_ISA_PORTABLE || limit(ANELM_ISA_AVXVNNI) != ANELM_ISA_PORTABLE || limit(ANELM_ISA_AVX2) != ANELM_ISA_PORTABLE ||
        limit(ANELM_ISA_PORTABLE) != ANELM_ISA_PORTABLE)
        FAIL("caps below NEON do not mean portable");
    if (limit(ANELM_ISA_NEON) != ANELM_ISA_NEON || limit(99) != ANELM_ISA_NEON) FAIL("caps at or above NEON do not give NEON");
#else
    // Built for the host to run the same comparisons on its levels (the NEON cap must not reach NEON).
    printf("level under test: %s (not arm64)\n", anelm_isa_name(fast_level));
    if (fast_level == ANELM_ISA_PORTABLE || limit(ANELM_ISA_NEON) == ANELM_ISA_NEON) {
        printf("FAIL: no vector level to compare\n");
        return 1;
    }
#endif
    limit(-1);
    if (trials) {
        swift_test_trials(trials);
        limit(-1);
        return 0;
    }
    replay_swift_tests();
    check_quantize();
    check_conversions();
    check_vectors();
    check_attention();
    check_matmuls();
    limit(-1);
    printf(failures ? "%d FAILURES\n" : "every kernel matches the portable one\n", failures);
    return failures ? 1 : 0;
}
