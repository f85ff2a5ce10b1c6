#ifndef ANELM_INTERNAL_H
#define ANELM_INTERNAL_H
#include "anelm_kernels.h"

// K-quants (Q4_K, Q5_K): the 6-bit scale and min of sub-block j (0–7) from the 12 packed bytes:
// bytes 0–3 hold scales 0–3 (low 6 bits) and the top 2 bits of scales 4–7, bytes 4–7 the same for
// the mins, bytes 8–11 the low 4 bits of scale (low nibble) and min (high nibble) 4–7.
static inline void anelm_scale_min_k4(const uint8_t *q, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
// AVX2/FMA/F16C versions (kernels_avx2.c; avx2_matmul_rows from kernels_x86.h); the vector ones serve
// every x86 level (anelm_uses_avx2()), the matrix one the AVX2 level.
void avx2_f16_to_f32(const uint16_t *src, float *dst, long n);
void avx2_quantize_q16(const float *x, anelm_block_q16 *out, long n);
float avx2_dot(const float *a, const float *b, long n);
void avx2_axpy(float a, const float *x, float *y, long n);
void avx2_f32_to_f16(const float *src, uint16_t *dst, long n);
void avx2_sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c);
float avx2_softmax(float *x, long n);
void avx2_attention(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale,
                    float softcap, float *scratch, float *out, float *lse);
void avx2_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                      long tokens, float *y, long rows, long row_begin, long row_end);
// The same matrix kernels with AVX-VNNI (kernels_avxvnni.c, from kernels_x86.h), at ANELM_ISA_AVXVNNI.
void avxvnni_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                         long tokens, float *y, long rows, long row_begin, long row_end);
// And with AVX512-VNNI + VL (kernels_avx512vnni.c, from kernels_x86.h), at ANELM_ISA_AVX512VNNI.
void avx512vnni_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                            long tokens, float *y, long rows, long row_begin, long row_end);
// NEON versions (kernels_neon.c); called only at ANELM_ISA_NEON (arm64). On the other architecture each
// name above is a stand-in that is never called (kernels_stubs.c).
void neon_f16_to_f32(const uint16_t *src, float *dst, long n);
void neon_bf16_to_f32(const uint16_t *src, float *dst, long n);
void neon_f32_to_f16(const float *src, uint16_t *dst, long n);
void neon_quantize_q16(const float *x, anelm_block_q16 *out, long n);
float neon_dot(const float *a, const float *b, long n);
void neon_axpy(float a, const float *x, float *y, long n);
void neon_sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c);
float neon_softmax(float *x, long n);
void neon_attention(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale,
                    float softcap, float *scratch, float *out, float *lse);
void neon_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                      long tokens, float *y, long rows, long row_begin, long row_end);
#endif
