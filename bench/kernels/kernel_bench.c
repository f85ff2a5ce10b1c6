// Kernel microbenchmarks, outside Swift: the C kernels of Sources/CANELMKernels on random weights.
//   kernel_bench block TYPE ROWS COLS TOKENS   ns per (row, token, 32-weight block), weights in L2
//   kernel_bench model THREADS TOKENS          SmolLM2-135M's matmuls (30 layers of q/k/v, o, gate/up,
//                                              down as Q4_1 + the Q8_0 output head), one pass: ms and t/s
// ANELM_ISA=portable|avx2|avxvnni|avx512vnni caps the kernel level (as for anelm). Times are the best of
// repeated runs.
#include "anelm_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static size_t block_bytes(int type) {
    switch (type) {
    case ANELM_Q8_0: return 34;
    case ANELM_Q4_0: return 18;
    case ANELM_Q4_1: return 20;
    case ANELM_Q5_0: return 22;
    case ANELM_Q5_1: return 24;
    case ANELM_Q4_K: return 144;
    case ANELM_Q5_K: return 176;
    case ANELM_Q6_K: return 210;
    case ANELM_F32: return 4;
    default: return 2;
    }
}
static int known_type(int type) {
    const int types[] = {ANELM_F32, ANELM_F16, ANELM_BF16, ANELM_Q8_0, ANELM_Q4_0, ANELM_Q4_1, ANELM_Q5_0, ANELM_Q5_1, ANELM_Q4_K, ANELM_Q5_K, ANELM_Q6_K};
    for (unsigned i = 0; i < sizeof types / sizeof *types; i++)
        if (types[i] == type) return 1;
    return 0;
}
static long block_size(int type) {
    return type >= ANELM_Q4_K && type <= ANELM_Q6_K ? 256 : type == ANELM_F32 || type == ANELM_F16 || type == ANELM_BF16 ? 1 : 32;
}

typedef struct {
    int type;
    long rows, cols;
    size_t row_bytes;
    uint8_t *w;
} matrix;

// Random blocks with small finite scales (random f16 bits would include NaN and subnormals).
static matrix make_matrix(int type, long rows, long cols) {
    matrix m = {type, rows, cols, (size_t)(cols / block_size(type)) * block_bytes(type), NULL};
    size_t bytes = m.row_bytes * (size_t)rows;
    m.w = aligned_alloc(64, (bytes + 63) / 64 * 64);
    for (size_t i = 0; i < bytes; i++) m.w[i] = (uint8_t)rand();
    size_t bb = block_bytes(type), blocks = bytes / bb;
    for (size_t b = 0; b < blocks; b++) {
        uint8_t *p = m.w + b * bb;
        if (type == ANELM_F32) {
            float f = (rand() % 2000 - 1000) / 1000.0f;
            memcpy(p, &f, 4);
            continue;
        }
        float value = type == ANELM_F16 || type == ANELM_BF16 ? (rand() % 2000 - 1000) / 1000.0f : 0.001f + 0.01f * (rand() % 100) / 100;
        uint32_t bits;
        memcpy(&bits, &value, 4);
        uint16_t h = type == ANELM_BF16 ? (uint16_t)(bits >> 16) : anelm_f32_to_f16(value);
        memcpy(type == ANELM_Q6_K ? p + 208 : p, &h, 2);
        if (type == ANELM_Q4_1 || type == ANELM_Q5_1 || type == ANELM_Q4_K || type == ANELM_Q5_K) memcpy(p + 2, &h, 2);
    }
    return m;
}

typedef struct {
    float *x;
    anelm_block_q16 *xq;
    anelm_block_q16x8 *xq8;
    long tokens, cols;
} input;

// As the library's matmul prepares them: quantized rows, and groups of eight tokens interleaved.
static input make_input(long tokens, long cols) {
    long blocks = cols / 32;
    input in = {malloc(sizeof(float) * tokens * cols), malloc(sizeof(anelm_block_q16) * tokens * blocks), NULL, tokens, cols};
    for (long i = 0; i < tokens * cols; i++) in.x[i] = (rand() % 2000 - 1000) / 1000.0f;
    for (long t = 0; t < tokens; t++) anelm_quantize_q16(in.x + t * cols, in.xq + t * blocks, cols);
    if (tokens >= 8) {
        in.xq8 = malloc(sizeof(anelm_block_q16x8) * (tokens / 8) * blocks);
        for (long g = 0; g < tokens / 8; g++) anelm_interleave_q16x8(in.xq + g * 8 * blocks, blocks, in.xq8 + g * blocks);
    }
    return in;
}

typedef struct {
    const matrix *m;
    const input *in;
    float *y;
    long per_task;
} job;

static void run_task(void *ctx, long i) {
    const job *j = ctx;
    long r0 = i * j->per_task, r1 = r0 + j->per_task < j->m->rows ? r0 + j->per_task : j->m->rows;
    anelm_matmul_rows(j->m->type, j->m->w, j->m->row_bytes, j->m->cols, j->in->x, j->in->xq, j->in->xq8, j->in->tokens, j->y, j->m->rows, r0, r1);
}

int main(int argc, char **argv) {
    srand(1);
    if (argc == 6 && strcmp(argv[1], "block") == 0) {
        int type = atoi(argv[2]);
        long rows = atol(argv[3]), cols = atol(argv[4]), tokens = atol(argv[5]);
        if (!known_type(type)) {
            fprintf(stderr, "unknown type %d (GGML ids: 0 F32, 1 F16, 30 BF16, 8 Q8_0, 2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1, 12 Q4_K, 13 Q5_K, 14 Q6_K)\n", type);
            return 2;
        }
        if (rows < 1 || cols < block_size(type) || cols % block_size(type) || (block_size(type) > 1 && cols % 32) || tokens < 1) {
            fprintf(stderr, "bad shape\n");
            return 2;
        }
        matrix m = make_matrix(type, rows, cols);
        input in = make_input(tokens, cols);
        float *y = malloc(sizeof(float) * tokens * rows);
        double best = 1e9, total = 0;
        while (total < 1.0) {
            double t = now();
            anelm_matmul_rows(type, m.w, m.row_bytes, cols, in.x, in.xq, in.xq8, tokens, y, rows, 0, rows);
            t = now() - t;
            total += t;
            if (t < best) best = t;
        }
        printf("type %d, %ldx%ld, %ld tokens, isa %s: %.3f ns per row, token and 32 weights\n", type, rows, cols, tokens, anelm_isa_name(anelm_isa_level()),
               best / ((double)rows * tokens * cols / 32) * 1e9);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "model") == 0) {
        int threads = atoi(argv[2]);
        long tokens = atol(argv[3]);
        if (threads < 1 || tokens < 1) {
            fprintf(stderr, "bad arguments\n");
            return 2;
        }
        enum { LAYERS = 30, COUNT = LAYERS * 4 + 1 };
        matrix mats[COUNT];
        for (int l = 0; l < LAYERS; l++) {
            mats[4 * l] = make_matrix(ANELM_Q4_1, 960, 576);  // q, k, v
            mats[4 * l + 1] = make_matrix(ANELM_Q4_1, 576, 576);  // o
            mats[4 * l + 2] = make_matrix(ANELM_Q4_1, 3072, 576);  // gate, up
            mats[4 * l + 3] = make_matrix(ANELM_Q4_1, 576, 1536);  // down
        }
        mats[COUNT - 1] = make_matrix(ANELM_Q8_0, 49152, 576);  // output head
        input narrow = make_input(tokens, 576), wide = make_input(tokens, 1536);
        float *y = malloc(sizeof(float) * tokens * 49152);
        anelm_pool *pool = anelm_pool_create(threads);
        double best = 1e9;
        for (int it = 0; it < (tokens > 1 ? 6 : 30); it++) {
            double t = now();
            for (int i = 0; i < COUNT; i++) {
                job j = {&mats[i], mats[i].cols == 1536 ? &wide : &narrow, y, 0};
                long tasks = threads * 4;
                j.per_task = (mats[i].rows + tasks - 1) / tasks;
                anelm_pool_run(pool, (mats[i].rows + j.per_task - 1) / j.per_task, run_task, &j);
            }
            t = now() - t;
            if (it > 0 && t < best) best = t;
        }
        printf("%d threads, %ld tokens per pass, isa %s: %.2f ms per pass, %.0f tokens/s\n", threads, tokens, anelm_isa_name(anelm_isa_level()), best * 1e3,
               tokens / best);
        anelm_pool_destroy(pool);
        return 0;
    }
    fprintf(stderr, "usage: kernel_bench block TYPE ROWS COLS TOKENS | kernel_bench model THREADS TOKENS\n");
    return 2;
}
