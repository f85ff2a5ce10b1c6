#ifndef ANELM_INTERNAL_H
#define ANELM_INTERNAL_H
#include "anelm_kernels.h"
// AVX2/FMA/F16C versions (kernels_avx2.c); called only when anelm_uses_avx2().
void avx2_f16_to_f32(const uint16_t *src, float *dst, long n);
void avx2_quantize_q16(const float *x, anelm_block_q16 *out, long n);
float avx2_dot(const float *a, const float *b, long n);
void avx2_axpy(float a, const float *x, float *y, long n);
void avx2_matmul_rows(int type, const void *w, size_t row_bytes, long cols,
                      const float *x, const anelm_block_q16 *xq, long tokens,
                      float *y, long rows, long row_begin, long row_end);
#endif
