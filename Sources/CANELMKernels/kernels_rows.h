// The row loop and the type dispatch every ISA's matrix kernels share (kernels_x86.h, kernels_neon.c).
// The includer has defined KERNEL (the functions' attribute, possibly empty), prefetch_start, the dot
// kernels dot_<type> (one token) and dot4_<type> (four tokens) of every weight type, and MATMUL_ROWS,
// the name of the entry point this file defines; with FLOAT_TILE_KERNELS also tile4_<type> (TILE_ROWS
// rows × four tokens) for f32, f16 and bf16, with EIGHT_TOKEN_KERNELS eight_<type> for the quantized
// types.

// TILE_ROWS rows (the includer's choice, else 2) against four tokens (tile4_<type>, out[4k…4k + 3] row
// k's): a register-tiled kernel where the includer has one for the float types (FLOAT_TILE_KERNELS),
// else one call of the four-token kernel per row.
#ifndef TILE_ROWS
#define TILE_ROWS 2
#endif
#define DEFINE_TILE_OF_FOURS(NAME, FOUR, WEIGHT, INPUT)                                                                    \
    KERNEL static inline void NAME(const WEIGHT *w, size_t row_bytes, const INPUT *a, long n, float *out) {                \
        for (int k = 0; k < TILE_ROWS; k++) FOUR((const WEIGHT *)((const uint8_t *)w + k * row_bytes), a, n, out + 4 * k); \
    }
DEFINE_TILE_OF_FOURS(tile4_q8_0, dot4_q8_0, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q4_0, dot4_q4_0, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q4_1, dot4_q4_1, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q5_0, dot4_q5_0, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q5_1, dot4_q5_1, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q4_k, dot4_q4_k, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q5_k, dot4_q5_k, uint8_t, anelm_block_q16)
DEFINE_TILE_OF_FOURS(tile4_q6_k, dot4_q6_k, uint8_t, anelm_block_q16)
// Eight tokens at a time from interleaved activations (eight_<type>: does the first 8·⌊tokens/8⌋ tokens
// and returns how many it did) where the includer has such kernels (EIGHT_TOKEN_KERNELS, the quantized
// types), else none: the four- and one-token kernels do every token.
KERNEL static inline long no_eight(const uint8_t *w, size_t row_bytes, long cols, const anelm_block_q16x8 *xq8, long tokens, float *y, long rows, long r0,
                                   long r1) {
    (void)w;
    (void)row_bytes;
    (void)cols;
    (void)xq8;
    (void)tokens;
    (void)y;
    (void)rows;
    (void)r0;
    (void)r1;
    return 0;
}
#ifndef EIGHT_TOKEN_KERNELS
#define eight_q8_0 no_eight
#define eight_q4_0 no_eight
#define eight_q4_1 no_eight
#define eight_q5_0 no_eight
#define eight_q5_1 no_eight
#define eight_q4_k no_eight
#define eight_q5_k no_eight
#define eight_q6_k no_eight
#endif
#ifndef FLOAT_TILE_KERNELS
DEFINE_TILE_OF_FOURS(tile4_f32, dot4_f32, float, float)
DEFINE_TILE_OF_FOURS(tile4_f16, dot4_f16, uint16_t, float)
DEFINE_TILE_OF_FOURS(tile4_bf16, dot4_bf16, uint16_t, float)
#endif

// Rows [r0, r1) of one weight type against every token: four tokens per pass over TILE_ROWS rows at a time
// (prefill), the rest one by one. Rows go in chunks of about 16 KB, and each chunk meets every token before the
// next: the chunk's weights and one group's activations both stay in L1 (row by row over all tokens
// re-read every token's activations from L2 for each row, and L2 bandwidth bounded prefill).
// The dot kernels are called directly, so they inline. ACTIVATIONS(t) is token t's input as the
// kernels take it, LENGTH its length in their units.
// Tokens are taken TOKEN_SPAN_BYTES of activations at a time (a multiple of four tokens, so the groups and
// each row's sums are the same as without spans): the span stays in L2 while every chunk of rows passes
// over it, where all of a long prompt's activations (2,000 tokens × 2,048 f32 = 16 MB) came from memory again
// for each chunk and halved prefill speed.
#define TOKEN_SPAN_BYTES (128 * 1024)
#define QUANTIZED_INPUT(t) (xq + (t) * (cols / 32))
#define FLOAT_INPUT(t) (x + (t)*cols)
#define DEFINE_ROWS(NAME, ONE, FOUR, TILE, EIGHT, ACTIVATIONS, LENGTH)                                                                              \
    KERNEL static void NAME(const uint8_t *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8, \
                            long tokens, float *y, long rows, long r0, long r1) {                                                                   \
        (void)x;                                                                                                                                    \
        (void)xq;                                                                                                                                   \
        long done = EIGHT(w, row_bytes, cols, xq8, tokens, y, rows, r0, r1);                                                                        \
        if (done == tokens) return;                                                                                                                 \
        prefetch_start(w + (size_t)r0 * row_bytes, (size_t)(r1 - r0) * row_bytes);                                                                  \
        long chunk = row_bytes >= 16384 ? 1 : (long)(16384 / row_bytes);                                                                            \
        long span = (long)(TOKEN_SPAN_BYTES / ((size_t)(LENGTH) * sizeof(*ACTIVATIONS(0)))) & ~3L;                                                 \
        span = span < 4 ? 4 : span;                                                                                                                 \
        for (long s0 = done; s0 < tokens; s0 += span) {                                                                                             \
          long s1 = s0 + span < tokens ? s0 + span : tokens;                                                                                        \
          for (long c0 = r0; c0 < r1; c0 += chunk) {                                                                                                \
            long c1 = c0 + chunk < r1 ? c0 + chunk : r1, t = s0;                                                                                    \
            for (; t + 4 <= s1; t += 4) {                                                                                                           \
                long r = c0;                                                                                                                        \
                for (; r + TILE_ROWS <= c1; r += TILE_ROWS) {                                                                                       \
                    float out[4 * TILE_ROWS];                                                                                                       \
                    TILE((const void *)(w + (size_t)r * row_bytes), row_bytes, ACTIVATIONS(t), LENGTH, out);                                        \
                    for (int k = 0; k < TILE_ROWS; k++)                                                                                             \
                        for (int i = 0; i < 4; i++) y[(t + i) * rows + r + k] = out[4 * k + i];                                                     \
                }                                                                                                                                   \
                for (; r < c1; r++) {                                                                                                               \
                    float out[4];                                                                                                                   \
                    FOUR((const void *)(w + (size_t)r * row_bytes), ACTIVATIONS(t), LENGTH, out);                                                   \
                    for (int i = 0; i < 4; i++) y[(t + i) * rows + r] = out[i];                                                                     \
                }                                                                                                                                   \
            }                                                                                                                                       \
            for (; t < s1; t++)                                                                                                                     \
                for (long r = c0; r < c1; r++) ONE((const void *)(w + (size_t)r * row_bytes), ACTIVATIONS(t), LENGTH, y + t * rows + r);            \
          }                                                                                                                                         \
        }                                                                                                                                           \
    }

DEFINE_ROWS(rows_q8_0, dot_q8_0, dot4_q8_0, tile4_q8_0, eight_q8_0, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q4_0, dot_q4_0, dot4_q4_0, tile4_q4_0, eight_q4_0, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q4_1, dot_q4_1, dot4_q4_1, tile4_q4_1, eight_q4_1, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q5_0, dot_q5_0, dot4_q5_0, tile4_q5_0, eight_q5_0, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q5_1, dot_q5_1, dot4_q5_1, tile4_q5_1, eight_q5_1, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q4_k, dot_q4_k, dot4_q4_k, tile4_q4_k, eight_q4_k, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q5_k, dot_q5_k, dot4_q5_k, tile4_q5_k, eight_q5_k, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_q6_k, dot_q6_k, dot4_q6_k, tile4_q6_k, eight_q6_k, QUANTIZED_INPUT, cols / 32)
DEFINE_ROWS(rows_f32, dot_f32, dot4_f32, tile4_f32, no_eight, FLOAT_INPUT, cols)
DEFINE_ROWS(rows_f16, dot_f16, dot4_f16, tile4_f16, no_eight, FLOAT_INPUT, cols)
DEFINE_ROWS(rows_bf16, dot_bf16, dot4_bf16, tile4_bf16, no_eight, FLOAT_INPUT, cols)

KERNEL void MATMUL_ROWS(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                        long tokens, float *y, long rows, long row_begin, long row_end) {
    void (*run)(const uint8_t *, size_t, long, const float *, const anelm_block_q16 *, const anelm_block_q16x8 *, long, float *, long, long, long);
    switch (type) {
    case ANELM_Q8_0: run = rows_q8_0; break;
    case ANELM_Q4_0: run = rows_q4_0; break;
    case ANELM_Q4_1: run = rows_q4_1; break;
    case ANELM_Q5_0: run = rows_q5_0; break;
    case ANELM_Q5_1: run = rows_q5_1; break;
    case ANELM_Q4_K: run = rows_q4_k; break;
    case ANELM_Q5_K: run = rows_q5_k; break;
    case ANELM_Q6_K: run = rows_q6_k; break;
    case ANELM_F32: run = rows_f32; break;
    case ANELM_F16: run = rows_f16; break;
    case ANELM_BF16: run = rows_bf16; break;
    default: return;
    }
    run(w, row_bytes, cols, x, xq, xq8, tokens, y, rows, row_begin, row_end);
}
