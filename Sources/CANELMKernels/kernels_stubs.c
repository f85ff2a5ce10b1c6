// Stand-ins for the other architecture's kernels, so that kernels.c's dispatch compiles and links on every
// target: anelm_isa_level() never picks a level this CPU lacks, so none of them is called. The real ones:
// avx2_* in kernels_avx2.c, the x86 levels' *_matmul_rows from kernels_x86.h (anelm_matmul_rows in
// kernels.c says where each comes from), neon_* in kernels_neon.c.
#include "internal.h"
#pragma GCC diagnostic ignored "-Wunused-parameter"

#define MATMUL_ROWS_STUB(NAME)                                                                                                                            \
    void NAME(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8, long tokens, \
              float *y, long rows, long row_begin, long row_end) {}
#define ATTENTION_STUB(NAME)                                                                                                                      \
    void NAME(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale, \
              float softcap, float *scratch, float *out, float *lse) {}

#if !defined(__x86_64__)
void avx2_f16_to_f32(const uint16_t *src, float *dst, long n) {}
void avx2_f32_to_f16(const float *src, uint16_t *dst, long n) {}
void avx2_quantize_q16(const float *x, anelm_block_q16 *out, long n) {}
float avx2_dot(const float *a, const float *b, long n) { return 0; }
void avx2_axpy(float a, const float *x, float *y, long n) {}
void avx2_sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c) {}
float avx2_softmax(float *x, long n) { return 0; }
ATTENTION_STUB(avx2_attention)
MATMUL_ROWS_STUB(avx2_matmul_rows)
MATMUL_ROWS_STUB(avxvnni_matmul_rows)
MATMUL_ROWS_STUB(avx512vnni_matmul_rows)
#endif

#if !defined(__aarch64__)
void neon_f16_to_f32(const uint16_t *src, float *dst, long n) {}
void neon_bf16_to_f32(const uint16_t *src, float *dst, long n) {}
void neon_f32_to_f16(const float *src, uint16_t *dst, long n) {}
void neon_quantize_q16(const float *x, anelm_block_q16 *out, long n) {}
float neon_dot(const float *a, const float *b, long n) { return 0; }
void neon_axpy(float a, const float *x, float *y, long n) {}
void neon_sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c) {}
float neon_softmax(float *x, long n) { return 0; }
ATTENTION_STUB(neon_attention)
MATMUL_ROWS_STUB(neon_matmul_rows)
#endif
