// AVX2/FMA/F16C kernels, compiled for those features per function; called only after a CPU check.
#include "internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 void avx2_f16_to_f32(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = anelm_f16_to_f32(src[i]);
}

AVX2 void avx2_quantize_q16(const float *x, anelm_block_q16 *out, long n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (long b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 32767, id = d > 0 ? 1 / d : 0;
        __m256 mul = _mm256_set1_ps(id);
#define r (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), r));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), r));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), r));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), r));
        // Saturating packs (as the portable clamp); packs interleave 128-bit lanes, the permute restores order.
        __m256i p0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
        __m256i p1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i2, i3), 0xD8);
        _mm256_storeu_si256((__m256i *)out[b].q, p0);
        _mm256_storeu_si256((__m256i *)(out[b].q + 16), p1);
        __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(p0, _mm256_set1_epi16(1)), _mm256_madd_epi16(p1, _mm256_set1_epi16(1)));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_hadd_epi32(s4, s4); s4 = _mm_hadd_epi32(s4, s4);
        out[b].d = d;
        out[b].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}
#undef r

AVX2 float avx2_dot(const float *a, const float *b, long n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AVX2 void avx2_axpy(float a, const float *x, float *y, long n) {
    __m256 va = _mm256_set1_ps(a);
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static float dot_f16(const uint16_t *w, const float *x, long n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += anelm_f16_to_f32(w[i]) * x[i];
    return s;
}

AVX2 static float dot_bf16(const uint16_t *w, const float *x, long n) {
    __m256 s0 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i wi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i))), 16);
        s0 = _mm256_fmadd_ps(_mm256_castsi256_ps(wi), _mm256_loadu_ps(x + i), s0);
    }
    float s = hsum(s0);
    for (; i < n; i++) { uint32_t b = (uint32_t)w[i] << 16; float f; memcpy(&f, &b, 4); s += f * x[i]; }
    return s;
}

AVX2 static inline float half(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return _cvtsh_ss(v); }

// Σ over a block of 32: weights as two int16 vectors (elements 0–15, 16–31) times 16-bit activations.
AVX2 static inline __m256 block_dot(__m256i w0, __m256i w1, const int16_t *a) {
    __m256i p = _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)a)),
                                 _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(a + 16))));
    return _mm256_cvtepi32_ps(p);
}

// Unpacks one block's weights to int16: Q4 nibbles (low nibbles are elements 0–15, high 16–31), Q8 bytes.
AVX2 static inline void unpack_q4(const uint8_t *qs, __m256i *w0, __m256i *w1) {
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qs));
    *w0 = _mm256_and_si256(b, _mm256_set1_epi16(0x0f));
    *w1 = _mm256_srli_epi16(b, 4);
}
AVX2 static inline void unpack_q8(const uint8_t *qs, __m256i *w0, __m256i *w1) {
    *w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)qs));
    *w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16)));
}

// Q5_0/Q5_1 from the 32 high bits: Q4 nibbles, plus 16 where bit j of qh is set (lane j of w0 is
// value j, of w1 value 16 + j).
AVX2 static inline void unpack_q5(const uint8_t *qh_qs, __m256i *w0, __m256i *w1) {
    uint32_t qh;
    memcpy(&qh, qh_qs, 4);
    unpack_q4(qh_qs + 4, w0, w1);
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, (short)0x8000);
    const __m256i sixteen = _mm256_set1_epi16(16);
    __m256i h0 = _mm256_and_si256(_mm256_set1_epi16((short)(qh & 0xffff)), bit);
    __m256i h1 = _mm256_and_si256(_mm256_set1_epi16((short)(qh >> 16)), bit);
    *w0 = _mm256_or_si256(*w0, _mm256_and_si256(_mm256_cmpeq_epi16(h0, bit), sixteen));
    *w1 = _mm256_or_si256(*w1, _mm256_and_si256(_mm256_cmpeq_epi16(h1, bit), sixteen));
}

// One weight row against N activation rows (N = 1 for decode, 4 for prefill: the weights are
// loaded and unpacked once per block for all N).
#define DEFINE_DOT(NAME, N, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)                                      \
    AVX2 static void NAME(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out) {     \
        __m256 acc[N];                                                                                \
        float mins[N];                                                                                \
        for (int i = 0; i < N; i++) { acc[i] = _mm256_setzero_ps(); mins[i] = 0; }                    \
        for (long b = 0; b < blocks; b++, w += BLOCK) {                                               \
            __m256i w0, w1;                                                                           \
            UNPACK(w + OFFSET, &w0, &w1);                                                             \
            if (BIAS) { w0 = _mm256_sub_epi16(w0, _mm256_set1_epi16(BIAS)); w1 = _mm256_sub_epi16(w1, _mm256_set1_epi16(BIAS)); } \
            float dw = half(w);                                                                       \
            for (int i = 0; i < N; i++) {                                                             \
                const anelm_block_q16 *a = xq + i * blocks + b;                                       \
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a->d), block_dot(w0, w1, a->q), acc[i]); \
                if (HAS_MIN) mins[i] += half(w + 2) * a->s;                                           \
            }                                                                                         \
        }                                                                                             \
        for (int i = 0; i < N; i++) out[i] = hsum(acc[i]) + mins[i];                                  \
    }

// Decode (one activation row): two accumulators over alternating blocks, so consecutive blocks'
// FMAs do not wait on each other (a single chain costs the FMA latency per block).
#define DEFINE_DOT1(NAME, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)                                        \
    AVX2 static void NAME(const uint8_t *w, const anelm_block_q16 *a, long blocks, float *out) {      \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                \
        float min0 = 0, min1 = 0;                                                                     \
        long b = 0;                                                                                   \
        for (; b + 2 <= blocks; b += 2, w += 2 * BLOCK) {                                             \
            __m256i w0, w1, v0, v1;                                                                   \
            UNPACK(w + OFFSET, &w0, &w1);                                                             \
            UNPACK(w + BLOCK + OFFSET, &v0, &v1);                                                     \
            if (BIAS) {                                                                               \
                const __m256i bias = _mm256_set1_epi16(BIAS);                                         \
                w0 = _mm256_sub_epi16(w0, bias); w1 = _mm256_sub_epi16(w1, bias);                     \
                v0 = _mm256_sub_epi16(v0, bias); v1 = _mm256_sub_epi16(v1, bias);                     \
            }                                                                                         \
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * a[b].d), block_dot(w0, w1, a[b].q), acc0); \
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(w + BLOCK) * a[b + 1].d), block_dot(v0, v1, a[b + 1].q), acc1); \
            if (HAS_MIN) { min0 += half(w + 2) * a[b].s; min1 += half(w + BLOCK + 2) * a[b + 1].s; } \
        }                                                                                             \
        for (; b < blocks; b++, w += BLOCK) {                                                         \
            __m256i w0, w1;                                                                           \
            UNPACK(w + OFFSET, &w0, &w1);                                                             \
            if (BIAS) { w0 = _mm256_sub_epi16(w0, _mm256_set1_epi16(BIAS)); w1 = _mm256_sub_epi16(w1, _mm256_set1_epi16(BIAS)); } \
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * a[b].d), block_dot(w0, w1, a[b].q), acc0); \
            if (HAS_MIN) min0 += half(w + 2) * a[b].s;                                                \
        }                                                                                             \
        *out = hsum(_mm256_add_ps(acc0, acc1)) + min0 + min1;                                         \
    }

// K-quant super-blocks unpack to 8 activation-block-sized pieces: q[2k], q[2k + 1] are values
// 32k…32k + 15 and 32k + 16…32k + 31 as int16, scale[k] multiplies their dot product with
// activation block k, and min[k]·(its d·Σq) is subtracted.
AVX2 static inline void unpack_q4_k(const uint8_t *p, __m256i *q, float *scale, float *min) {
    float d = half(p), dmin = half(p + 2);
    for (int k = 0; k < 8; k++) {
        int sc, m;
        anelm_scale_min_k4(p + 4, k, &sc, &m);
        scale[k] = d * (float)sc;
        min[k] = dmin * (float)m;
    }
    const uint8_t *qs = p + 16;
    const __m256i low = _mm256_set1_epi16(0x0f);
    for (int j = 0; j < 4; j++) {  // 32 bytes: low nibbles are sub-block 2j, high nibbles 2j + 1
        __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 32 * j)));
        __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 32 * j + 16)));
        q[4 * j] = _mm256_and_si256(b0, low);
        q[4 * j + 1] = _mm256_and_si256(b1, low);
        q[4 * j + 2] = _mm256_srli_epi16(b0, 4);
        q[4 * j + 3] = _mm256_srli_epi16(b1, 4);
    }
}

AVX2 static inline void unpack_q5_k(const uint8_t *p, __m256i *q, float *scale, float *min) {
    // Same scales as Q4_K; the nibbles start after 32 bytes of fifth bits (bit k of byte l: sub-block k, value l).
    float d = half(p), dmin = half(p + 2);
    for (int k = 0; k < 8; k++) {
        int sc, m;
        anelm_scale_min_k4(p + 4, k, &sc, &m);
        scale[k] = d * (float)sc;
        min[k] = dmin * (float)m;
    }
    const uint8_t *qh = p + 16, *qs = p + 48;
    const __m256i low = _mm256_set1_epi16(0x0f), one = _mm256_set1_epi16(1);
    for (int j = 0; j < 4; j++) {
        __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 32 * j)));
        __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 32 * j + 16)));
        q[4 * j] = _mm256_and_si256(b0, low);
        q[4 * j + 1] = _mm256_and_si256(b1, low);
        q[4 * j + 2] = _mm256_srli_epi16(b0, 4);
        q[4 * j + 3] = _mm256_srli_epi16(b1, 4);
    }
    __m256i h0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qh));
    __m256i h1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qh + 16)));
    for (int k = 0; k < 8; k++) {
        q[2 * k] = _mm256_or_si256(q[2 * k], _mm256_slli_epi16(_mm256_and_si256(h0, one), 4));
        q[2 * k + 1] = _mm256_or_si256(q[2 * k + 1], _mm256_slli_epi16(_mm256_and_si256(h1, one), 4));
        h0 = _mm256_srli_epi16(h0, 1);
        h1 = _mm256_srli_epi16(h1, 1);
    }
}

AVX2 static inline void unpack_q6_k(const uint8_t *p, __m256i *q, float *scale, float *min) {
    // Each of the two halves: 64 bytes of nibbles (sub-blocks 0, 1 low; 2, 3 high), 32 bytes of
    // 2-bit pairs (bits 2k, 2k + 1: sub-block k), 8 int8 scales (one per 16 values). The scales are
    // folded into the int16 weights (|q·scale| ≤ 4096), so scale[k] is just d.
    float d = half(p + 208);
    const __m256i low = _mm256_set1_epi16(0x0f), three = _mm256_set1_epi16(3), bias = _mm256_set1_epi16(32);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(p + 192 + 8 * h);
        __m256i h0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qh));
        __m256i h1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qh + 16)));
        for (int k = 0; k < 4; k++) {
            __m256i l0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(ql + 32 * (k & 1))));
            __m256i l1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(ql + 32 * (k & 1) + 16)));
            if (k >= 2) { l0 = _mm256_srli_epi16(l0, 4); l1 = _mm256_srli_epi16(l1, 4); }
            __m256i v0 = _mm256_or_si256(_mm256_and_si256(l0, low), _mm256_slli_epi16(_mm256_and_si256(h0, three), 4));
            __m256i v1 = _mm256_or_si256(_mm256_and_si256(l1, low), _mm256_slli_epi16(_mm256_and_si256(h1, three), 4));
            h0 = _mm256_srli_epi16(h0, 2);
            h1 = _mm256_srli_epi16(h1, 2);
            int b = 4 * h + k;
            q[2 * b] = _mm256_mullo_epi16(_mm256_sub_epi16(v0, bias), _mm256_set1_epi16(sc[2 * k]));
            q[2 * b + 1] = _mm256_mullo_epi16(_mm256_sub_epi16(v1, bias), _mm256_set1_epi16(sc[2 * k + 1]));
            scale[b] = d;
            min[b] = 0;
        }
    }
}

// One weight row of K-quant super-blocks (BLOCK bytes each) against N activation rows: each
// super-block is unpacked once for all N; even and odd activation blocks go to separate
// accumulators, so consecutive FMAs do not wait on each other.
#define DEFINE_KDOT(NAME, N, BLOCK, UNPACK, HAS_MIN)                                                  \
    AVX2 static void NAME(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out) {     \
        __m256 acc0[N], acc1[N];                                                                      \
        float mins[N];                                                                                \
        for (int i = 0; i < N; i++) { acc0[i] = _mm256_setzero_ps(); acc1[i] = _mm256_setzero_ps(); mins[i] = 0; } \
        for (long s = 0; s < blocks / 8; s++, w += BLOCK) {                                           \
            __m256i q[16];                                                                            \
            float scale[8], min[8];                                                                   \
            UNPACK(w, q, scale, min);                                                                 \
            for (int i = 0; i < N; i++) {                                                             \
                const anelm_block_q16 *a = xq + i * blocks + 8 * s;                                   \
                for (int k = 0; k < 8; k += 2) {                                                      \
                    acc0[i] = _mm256_fmadd_ps(_mm256_set1_ps(scale[k] * a[k].d), block_dot(q[2 * k], q[2 * k + 1], a[k].q), acc0[i]); \
                    acc1[i] = _mm256_fmadd_ps(_mm256_set1_ps(scale[k + 1] * a[k + 1].d), block_dot(q[2 * k + 2], q[2 * k + 3], a[k + 1].q), acc1[i]); \
                    if (HAS_MIN) mins[i] += min[k] * a[k].s + min[k + 1] * a[k + 1].s;                \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        for (int i = 0; i < N; i++) out[i] = hsum(_mm256_add_ps(acc0[i], acc1[i])) - mins[i];         \
    }

DEFINE_DOT1(dot_q8_0, 34, unpack_q8, 2, 0, 0)
DEFINE_DOT1(dot_q4_0, 18, unpack_q4, 2, 8, 0)
DEFINE_DOT1(dot_q4_1, 20, unpack_q4, 4, 0, 1)
DEFINE_DOT(dot4_q8_0, 4, 34, unpack_q8, 2, 0, 0)
DEFINE_DOT(dot4_q4_0, 4, 18, unpack_q4, 2, 8, 0)
DEFINE_DOT(dot4_q4_1, 4, 20, unpack_q4, 4, 0, 1)
DEFINE_DOT1(dot_q5_0, 22, unpack_q5, 2, 16, 0)
DEFINE_DOT1(dot_q5_1, 24, unpack_q5, 4, 0, 1)
DEFINE_DOT(dot4_q5_0, 4, 22, unpack_q5, 2, 16, 0)
DEFINE_DOT(dot4_q5_1, 4, 24, unpack_q5, 4, 0, 1)
DEFINE_KDOT(dot_q4_k, 1, 144, unpack_q4_k, 1)
DEFINE_KDOT(dot_q5_k, 1, 176, unpack_q5_k, 1)
DEFINE_KDOT(dot_q6_k, 1, 210, unpack_q6_k, 0)
DEFINE_KDOT(dot4_q4_k, 4, 144, unpack_q4_k, 1)
DEFINE_KDOT(dot4_q5_k, 4, 176, unpack_q5_k, 1)
DEFINE_KDOT(dot4_q6_k, 4, 210, unpack_q6_k, 0)

typedef void (*quantized_dot)(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out);

// The decode (1 row) and prefill (4 rows) kernels of a quantized type; both NULL for float types.
static void quantized_dots(int type, quantized_dot *one, quantized_dot *four) {
    switch (type) {
    case ANELM_Q8_0: *one = dot_q8_0; *four = dot4_q8_0; return;
    case ANELM_Q4_0: *one = dot_q4_0; *four = dot4_q4_0; return;
    case ANELM_Q4_1: *one = dot_q4_1; *four = dot4_q4_1; return;
    case ANELM_Q5_0: *one = dot_q5_0; *four = dot4_q5_0; return;
    case ANELM_Q5_1: *one = dot_q5_1; *four = dot4_q5_1; return;
    case ANELM_Q4_K: *one = dot_q4_k; *four = dot4_q4_k; return;
    case ANELM_Q5_K: *one = dot_q5_k; *four = dot4_q5_k; return;
    case ANELM_Q6_K: *one = dot_q6_k; *four = dot4_q6_k; return;
    default: *one = NULL; *four = NULL; return;
    }
}

// Four activation rows against one float weight row (prefill): each 8 weights are loaded and
// converted once for the four rows.
#define DEFINE_DOT4_FLOAT(NAME, TYPE, LOAD8, SCALAR)                                                  \
    AVX2 static void NAME(const TYPE *w, const float *x, long cols, float *out) {                     \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        long c = 0;                                                                                   \
        for (; c + 8 <= cols; c += 8) {                                                               \
            __m256 wv = LOAD8(w + c);                                                                 \
            for (int i = 0; i < 4; i++) acc[i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i * cols + c), acc[i]); \
        }                                                                                             \
        for (int i = 0; i < 4; i++) {                                                                 \
            float s = hsum(acc[i]);                                                                   \
            for (long k = c; k < cols; k++) s += SCALAR(w[k]) * x[i * cols + k];                       \
            out[i] = s;                                                                               \
        }                                                                                             \
    }

AVX2 static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
AVX2 static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
AVX2 static inline __m256 load8_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline float scalar_f32(float v) { return v; }
static inline float scalar_bf16(uint16_t v) { uint32_t b = (uint32_t)v << 16; float f; memcpy(&f, &b, 4); return f; }

DEFINE_DOT4_FLOAT(dot4_f32, float, load8_f32, scalar_f32)
DEFINE_DOT4_FLOAT(dot4_f16, uint16_t, load8_f16, anelm_f16_to_f32)
DEFINE_DOT4_FLOAT(dot4_bf16, uint16_t, load8_bf16, scalar_bf16)

AVX2 void avx2_matmul_rows(int type, const void *w, size_t row_bytes, long cols,
                           const float *x, const anelm_block_q16 *xq, long tokens,
                           float *y, long rows, long row_begin, long row_end) {
    long blocks = cols / 32;
    quantized_dot one, four;
    quantized_dots(type, &one, &four);
    for (long r = row_begin; r < row_end; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * row_bytes;
        long t = 0;
        for (; t + 4 <= tokens; t += 4) {
            float out[4];
            if (four) four(wr, xq + t * blocks, blocks, out);
            else if (type == ANELM_F32) dot4_f32((const float *)wr, x + t * cols, cols, out);
            else if (type == ANELM_F16) dot4_f16((const uint16_t *)wr, x + t * cols, cols, out);
            else if (type == ANELM_BF16) dot4_bf16((const uint16_t *)wr, x + t * cols, cols, out);
            else out[0] = out[1] = out[2] = out[3] = 0;
            for (int i = 0; i < 4; i++) y[(t + i) * rows + r] = out[i];
        }
        for (; t < tokens; t++) {
            float v = 0;
            if (one) one(wr, xq + t * blocks, blocks, &v);
            else if (type == ANELM_F32) v = avx2_dot((const float *)wr, x + t * cols, cols);
            else if (type == ANELM_F16) v = dot_f16((const uint16_t *)wr, x + t * cols, cols);
            else if (type == ANELM_BF16) v = dot_bf16((const uint16_t *)wr, x + t * cols, cols);
            y[t * rows + r] = v;
        }
    }
}
#else
// Not x86_64: never called (anelm_uses_avx2() is 0).
void avx2_f16_to_f32(const uint16_t *src, float *dst, long n) { (void)src; (void)dst; (void)n; }
void avx2_quantize_q16(const float *x, anelm_block_q16 *out, long n) { (void)x; (void)out; (void)n; }
float avx2_dot(const float *a, const float *b, long n) { (void)a; (void)b; (void)n; return 0; }
void avx2_axpy(float a, const float *x, float *y, long n) { (void)a; (void)x; (void)y; (void)n; }
void avx2_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq,
                      long tokens, float *y, long rows, long row_begin, long row_end) {
    (void)type; (void)w; (void)row_bytes; (void)cols; (void)x; (void)xq; (void)tokens; (void)y; (void)rows; (void)row_begin; (void)row_end;
}
#endif
