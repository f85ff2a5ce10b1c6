// NEON kernels for arm64 (Apple M-series, Linux arm64): the structure of kernels_x86.h and kernels_avx2.c
// in 128-bit vectors. AArch64's baseline has NEON, FMA and f16 conversions, so beyond __aarch64__ there
// is no run-time check. These were verified against the portable kernels under emulation
// (tools/neon-check, qemu-aarch64), not timed on arm64 hardware: the row chunks and the prefetch
// distance are the ones measured on x86.
#include "internal.h"
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

// MARK: helpers

#define PREFETCH_AHEAD 4096

static inline void prefetch_ahead(const uint8_t *p) { __builtin_prefetch(p + PREFETCH_AHEAD); }
// The first PREFETCH_AHEAD bytes of a range, which the loops' own prefetches do not cover.
static inline void prefetch_start(const uint8_t *p, size_t bytes) {
    size_t end = bytes < PREFETCH_AHEAD ? bytes : PREFETCH_AHEAD;
    for (size_t i = 0; i < end; i += 64) __builtin_prefetch(p + i);
}

static inline float half(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(v))), 0);
}

// MARK: quantized weights

// One 32-value block's weights as int16 (val[0] elements 0–7, … val[3] 24–31), from bytes that already
// hold the values (unsigned below 128, or signed).
static inline int16x8x4_t widen_s8(int8x16_t lo, int8x16_t hi) {
    int16x8x4_t w;
    w.val[0] = vmovl_s8(vget_low_s8(lo));
    w.val[1] = vmovl_high_s8(lo);
    w.val[2] = vmovl_s8(vget_low_s8(hi));
    w.val[3] = vmovl_high_s8(hi);
    return w;
}
static inline int16x8x4_t widen_u8(uint8x16_t lo, uint8x16_t hi) { return widen_s8(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)); }

// Σ over a block of 32 weights times 16-bit activations, as partial sums in a float vector. Two int32
// chains of four widening multiply-adds; a lane sums 8 products of |w| ≤ 4096 (Q6_K with its scale
// folded in) and |a| ≤ 32768, at most 2^30, so int32 does not overflow.
static inline float32x4_t block_dot(int16x8x4_t w, const int16_t *a) {
    int16x8_t a0 = vld1q_s16(a), a1 = vld1q_s16(a + 8), a2 = vld1q_s16(a + 16), a3 = vld1q_s16(a + 24);
    int32x4_t p0 = vmull_s16(vget_low_s16(w.val[0]), vget_low_s16(a0));
    int32x4_t p1 = vmull_s16(vget_low_s16(w.val[1]), vget_low_s16(a1));
    p0 = vmlal_high_s16(p0, w.val[0], a0);
    p1 = vmlal_high_s16(p1, w.val[1], a1);
    p0 = vmlal_s16(p0, vget_low_s16(w.val[2]), vget_low_s16(a2));
    p1 = vmlal_s16(p1, vget_low_s16(w.val[3]), vget_low_s16(a3));
    p0 = vmlal_high_s16(p0, w.val[2], a2);
    p1 = vmlal_high_s16(p1, w.val[3], a3);
    return vcvtq_f32_s32(vaddq_s32(p0, p1));
}

// One block's weights minus `bias` (a constant, folded away when 0), subtracted on bytes before widening.
// Q4 nibbles: low nibbles are elements 0–15, high 16–31.
static inline int16x8x4_t unpack_q4(const uint8_t *qs, int bias) {
    uint8x16_t b = vld1q_u8(qs);
    int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f))), hi = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
    return widen_s8(vsubq_s8(lo, vdupq_n_s8((int8_t)bias)), vsubq_s8(hi, vdupq_n_s8((int8_t)bias)));
}
static inline int16x8x4_t unpack_q8(const uint8_t *qs, int bias) {
    (void)bias;
    return widen_s8(vld1q_s8((const int8_t *)qs), vld1q_s8((const int8_t *)(qs + 16)));
}
// Q5_0/Q5_1 from the 32 high bits: Q4 nibbles, plus 16 where bit j of qh is set for value j. Each byte
// of qh serves 8 values: it is repeated over their lanes and tested against one bit per lane.
static inline int16x8x4_t unpack_q5(const uint8_t *qh_qs, int bias) {
    static const uint8_t lane_bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bit = vld1q_u8(lane_bit), sixteen = vdupq_n_u8(16);
    uint8x16_t b = vld1q_u8(qh_qs + 4);
    uint8x16_t h0 = vcombine_u8(vdup_n_u8(qh_qs[0]), vdup_n_u8(qh_qs[1]));
    uint8x16_t h1 = vcombine_u8(vdup_n_u8(qh_qs[2]), vdup_n_u8(qh_qs[3]));
    uint8x16_t lo = vorrq_u8(vandq_u8(b, vdupq_n_u8(0x0f)), vandq_u8(vtstq_u8(h0, bit), sixteen));
    uint8x16_t hi = vorrq_u8(vshrq_n_u8(b, 4), vandq_u8(vtstq_u8(h1, bit), sixteen));
    return widen_s8(vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8((int8_t)bias)), vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8((int8_t)bias)));
}

// A block's f16 scale d (and min m, for types with one) as floats in lanes 0 (and 1): they sit at the
// block's start, as anelm_block_q16's d and s do, so one conversion makes both...
static inline float32x2_t block_scales(const uint8_t *w, int has_min) {
    uint32_t bits = 0;
    memcpy(&bits, w, has_min ? 4 : 2);
    return vget_low_f32(vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(bits))));
}
// ...and one multiply by the activation block's (d, s) gives lane 0 d·d_x, which scales the integer
// dot product, and lane 1 m·s_x, the min term.
static inline float32x2_t times_activation_scales(float32x2_t scales, const anelm_block_q16 *a) { return vmul_f32(scales, vld1_f32(&a->d)); }

// One weight row of 32-value blocks against one activation row (decode). Two accumulators over
// alternating blocks, so consecutive blocks' FMAs do not wait on each other.
#define DEFINE_DOT1(NAME, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)                                              \
    static inline float32x4_t NAME##_block(const uint8_t *w, const anelm_block_q16 *a, float32x2_t *scale) { \
        int16x8x4_t q = UNPACK(w + OFFSET, BIAS);                                                            \
        *scale = times_activation_scales(block_scales(w, HAS_MIN), a);                                       \
        return block_dot(q, a->q);                                                                           \
    }                                                                                                        \
    static void NAME(const uint8_t *w, const anelm_block_q16 *a, long blocks, float *out) {                  \
        float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);                                            \
        float32x2_t min0 = vdup_n_f32(0), min1 = vdup_n_f32(0), s0, s1;                                      \
        long b = 0;                                                                                          \
        for (; b + 2 <= blocks; b += 2, w += 2 * BLOCK) {                                                    \
            prefetch_ahead(w);                                                                               \
            float32x4_t p0 = NAME##_block(w, a + b, &s0), p1 = NAME##_block(w + BLOCK, a + b + 1, &s1);      \
            acc0 = vfmaq_lane_f32(acc0, p0, s0, 0);                                                          \
            acc1 = vfmaq_lane_f32(acc1, p1, s1, 0);                                                          \
            if (HAS_MIN) {                                                                                   \
                min0 = vadd_f32(min0, s0);                                                                   \
                min1 = vadd_f32(min1, s1);                                                                   \
            }                                                                                                \
        }                                                                                                    \
        for (; b < blocks; b++, w += BLOCK) {                                                                \
            float32x4_t p0 = NAME##_block(w, a + b, &s0);                                                    \
            acc0 = vfmaq_lane_f32(acc0, p0, s0, 0);                                                          \
            if (HAS_MIN) min0 = vadd_f32(min0, s0);                                                          \
        }                                                                                                    \
        float mins = HAS_MIN ? vget_lane_f32(vadd_f32(min0, min1), 1) : 0;                                   \
        *out = vaddvq_f32(vaddq_f32(acc0, acc1)) + mins;                                                     \
    }

// One weight row against four activation rows (prefill): each block's weights are loaded and
// unpacked once for the four.
#define DEFINE_DOT4(NAME, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)                                              \
    static void NAME(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out) {                 \
        float32x4_t acc[4];                                                                                  \
        float32x2_t mins[4];                                                                                 \
        for (int i = 0; i < 4; i++) {                                                                        \
            acc[i] = vdupq_n_f32(0);                                                                         \
            mins[i] = vdup_n_f32(0);                                                                         \
        }                                                                                                    \
        for (long b = 0; b < blocks; b++, w += BLOCK) {                                                      \
            prefetch_ahead(w);                                                                               \
            int16x8x4_t q = UNPACK(w + OFFSET, BIAS);                                                        \
            float32x2_t ws = block_scales(w, HAS_MIN);                                                       \
            for (int i = 0; i < 4; i++) {                                                                    \
                const anelm_block_q16 *a = xq + i * blocks + b;                                              \
                float32x2_t s = times_activation_scales(ws, a);                                              \
                acc[i] = vfmaq_lane_f32(acc[i], block_dot(q, a->q), s, 0);                                   \
                if (HAS_MIN) mins[i] = vadd_f32(mins[i], s);                                                 \
            }                                                                                                \
        }                                                                                                    \
        for (int i = 0; i < 4; i++) out[i] = vaddvq_f32(acc[i]) + (HAS_MIN ? vget_lane_f32(mins[i], 1) : 0); \
    }

// K-quant super-blocks (256 values) go in pairs of sub-blocks, 2j and 2j + 1 (j 0–3), each 32 values
// lining up with one activation block: a pair's 64 weights (8 registers) are unpacked once and meet
// every token before the next pair, so the kernels mostly stay in registers (x86 unpacks all 256 at once;
// unpacking one sub-block at a time made clang spill more, not less).
// scale[k] multiplies sub-block k's dot product with activation block k, and min[k]·(its d·Σq) is
// subtracted.
static inline void k4_scales(const uint8_t *p, float *scale, float *min) {
    float d = half(p), dmin = half(p + 2);
    for (int k = 0; k < 8; k++) {
        int sc, m;
        anelm_scale_min_k4(p + 4, k, &sc, &m);
        scale[k] = d * (float)sc;
        min[k] = dmin * (float)m;
    }
}
static inline void q6_k_scales(const uint8_t *p, float *scale, float *min) {
    // The int8 scales are folded into the weights (see q6_k_pair), so every sub-block's scale is d.
    float d = half(p + 208);
    for (int k = 0; k < 8; k++) {
        scale[k] = d;
        min[k] = 0;
    }
}
// Q4_K: 32 bytes of nibbles at 16 + 32j serve sub-blocks 2j (low nibbles) and 2j + 1 (high).
static inline void q4_k_pair(const uint8_t *p, int j, int16x8x4_t *even, int16x8x4_t *odd) {
    const uint8_t *qs = p + 16 + 32 * j;
    const uint8x16_t low = vdupq_n_u8(0x0f);
    uint8x16_t b0 = vld1q_u8(qs), b1 = vld1q_u8(qs + 16);
    *even = widen_u8(vandq_u8(b0, low), vandq_u8(b1, low));
    *odd = widen_u8(vshrq_n_u8(b0, 4), vshrq_n_u8(b1, 4));
}
// Q5_K: Q4_K's scales; the nibbles come after 32 bytes of fifth bits (bit k of byte l: sub-block k, value l).
static inline void q5_k_pair(const uint8_t *p, int j, int16x8x4_t *even, int16x8x4_t *odd) {
    const uint8_t *qs = p + 48 + 32 * j, *qh = p + 16;
    const uint8x16_t low = vdupq_n_u8(0x0f), sixteen = vdupq_n_u8(16);
    const uint8x16_t bit_even = vdupq_n_u8((uint8_t)(1u << (2 * j))), bit_odd = vdupq_n_u8((uint8_t)(2u << (2 * j)));
    uint8x16_t b0 = vld1q_u8(qs), b1 = vld1q_u8(qs + 16), h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
    *even = widen_u8(vorrq_u8(vandq_u8(b0, low), vandq_u8(vtstq_u8(h0, bit_even), sixteen)),
                     vorrq_u8(vandq_u8(b1, low), vandq_u8(vtstq_u8(h1, bit_even), sixteen)));
    *odd =
        widen_u8(vorrq_u8(vshrq_n_u8(b0, 4), vandq_u8(vtstq_u8(h0, bit_odd), sixteen)), vorrq_u8(vshrq_n_u8(b1, 4), vandq_u8(vtstq_u8(h1, bit_odd), sixteen)));
}
// Q6_K: each half of 128 values (h = j / 2) has 64 bytes of nibbles (sub-blocks 0, 1 of the half low; 2, 3
// high), 32 bytes of 2-bit pairs (bits 2k, 2k + 1: sub-block k of the half) and 8 int8 scales, one per 16
// values, folded into the int16 weights (|q·scale| ≤ 4096).
static inline int16x8x4_t q6_k_sub(uint8x16_t l0, uint8x16_t l1, uint8x16_t h0, uint8x16_t h1, int shift_low, int shift_high, const int8_t *sc) {
    const uint8x16_t low = vdupq_n_u8(0x0f), three = vdupq_n_u8(3);
    const int8x16_t down_low = vdupq_n_s8((int8_t)-shift_low), down_high = vdupq_n_s8((int8_t)-shift_high);
    // (nibble | 2 high bits << 4) − 32 in [−32, 31], on bytes.
    uint8x16_t v0 = vorrq_u8(vandq_u8(vshlq_u8(l0, down_low), low), vshlq_n_u8(vandq_u8(vshlq_u8(h0, down_high), three), 4));
    uint8x16_t v1 = vorrq_u8(vandq_u8(vshlq_u8(l1, down_low), low), vshlq_n_u8(vandq_u8(vshlq_u8(h1, down_high), three), 4));
    int16x8x4_t w = widen_s8(vsubq_s8(vreinterpretq_s8_u8(v0), vdupq_n_s8(32)), vsubq_s8(vreinterpretq_s8_u8(v1), vdupq_n_s8(32)));
    w.val[0] = vmulq_n_s16(w.val[0], sc[0]);
    w.val[1] = vmulq_n_s16(w.val[1], sc[0]);
    w.val[2] = vmulq_n_s16(w.val[2], sc[1]);
    w.val[3] = vmulq_n_s16(w.val[3], sc[1]);
    return w;
}
static inline void q6_k_pair(const uint8_t *p, int j, int16x8x4_t *even, int16x8x4_t *odd) {
    int h = j >> 1, k = 2 * (j & 1);  // sub-blocks k and k + 1 of half h
    const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
    const int8_t *sc = (const int8_t *)(p + 192 + 8 * h);
    uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
    int shift_low = 4 * (k >> 1);
    *even = q6_k_sub(vld1q_u8(ql), vld1q_u8(ql + 16), h0, h1, shift_low, 2 * k, sc + 2 * k);
    *odd = q6_k_sub(vld1q_u8(ql + 32), vld1q_u8(ql + 48), h0, h1, shift_low, 2 * k + 2, sc + 2 * k + 2);
}

// One weight row of K-quant super-blocks (BLOCK bytes each) against N activation rows. For one row, even
// and odd sub-blocks go to separate accumulators (ODD acc1), so consecutive FMAs do not wait on each
// other; for four, the rows are the independent chains and one accumulator each (ODD acc0) leaves the
// registers to the unpacked weights. The token loop is unrolled so the accumulators stay in registers
// (clang kept them in memory: a store and a load on every FMA's chain).
#define DEFINE_KDOT(NAME, N, ODD, BLOCK, SCALES, PAIR, HAS_MIN)                                      \
    static void NAME(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out) {         \
        float32x4_t acc0[N], acc1[N];                                                                \
        float mins[N];                                                                               \
        for (int i = 0; i < N; i++) {                                                                \
            acc0[i] = vdupq_n_f32(0);                                                                \
            acc1[i] = vdupq_n_f32(0);                                                                \
            mins[i] = 0;                                                                             \
        }                                                                                            \
        for (long s = 0; s < blocks / 8; s++, w += BLOCK) {                                          \
            for (int line = 0; line < BLOCK; line += 64) prefetch_ahead(w + line);                   \
            float scale[8], min[8];                                                                  \
            SCALES(w, scale, min);                                                                   \
            for (int j = 0; j < 4; j++) {                                                            \
                int16x8x4_t even, odd;                                                               \
                PAIR(w, j, &even, &odd);                                                             \
                _Pragma("GCC unroll 4") for (int i = 0; i < N; i++) {                                \
                    const anelm_block_q16 *a = xq + i * blocks + 8 * s + 2 * j;                      \
                    acc0[i] = vfmaq_n_f32(acc0[i], block_dot(even, a[0].q), scale[2 * j] * a[0].d);  \
                    ODD[i] = vfmaq_n_f32(ODD[i], block_dot(odd, a[1].q), scale[2 * j + 1] * a[1].d); \
                    if (HAS_MIN) mins[i] += min[2 * j] * a[0].s + min[2 * j + 1] * a[1].s;           \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
        for (int i = 0; i < N; i++) out[i] = vaddvq_f32(vaddq_f32(acc0[i], acc1[i])) - mins[i];      \
    }

DEFINE_DOT1(dot_q8_0, 34, unpack_q8, 2, 0, 0)
DEFINE_DOT1(dot_q4_0, 18, unpack_q4, 2, 8, 0)
DEFINE_DOT1(dot_q4_1, 20, unpack_q4, 4, 0, 1)
DEFINE_DOT1(dot_q5_0, 22, unpack_q5, 2, 16, 0)
DEFINE_DOT1(dot_q5_1, 24, unpack_q5, 4, 0, 1)
DEFINE_DOT4(dot4_q8_0, 34, unpack_q8, 2, 0, 0)
DEFINE_DOT4(dot4_q4_0, 18, unpack_q4, 2, 8, 0)
DEFINE_DOT4(dot4_q4_1, 20, unpack_q4, 4, 0, 1)
DEFINE_DOT4(dot4_q5_0, 22, unpack_q5, 2, 16, 0)
DEFINE_DOT4(dot4_q5_1, 24, unpack_q5, 4, 0, 1)
DEFINE_KDOT(dot_q4_k, 1, acc1, 144, k4_scales, q4_k_pair, 1)
DEFINE_KDOT(dot_q5_k, 1, acc1, 176, k4_scales, q5_k_pair, 1)
DEFINE_KDOT(dot_q6_k, 1, acc1, 210, q6_k_scales, q6_k_pair, 0)
DEFINE_KDOT(dot4_q4_k, 4, acc0, 144, k4_scales, q4_k_pair, 1)
DEFINE_KDOT(dot4_q5_k, 4, acc0, 176, k4_scales, q5_k_pair, 1)
DEFINE_KDOT(dot4_q6_k, 4, acc0, 210, q6_k_scales, q6_k_pair, 0)

// MARK: float weights

// 8 weights as two f32 vectors, or 4 as one.
static inline float32x4x2_t load8_f32(const float *p) {
    float32x4x2_t v = {{vld1q_f32(p), vld1q_f32(p + 4)}};
    return v;
}
static inline float32x4x2_t load8_f16(const uint16_t *p) {
    uint16x8_t h = vld1q_u16(p);
    float32x4x2_t v = {{vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))), vcvt_high_f32_f16(vreinterpretq_f16_u16(h))}};
    return v;
}
static inline float32x4x2_t load8_bf16(const uint16_t *p) {
    uint16x8_t h = vld1q_u16(p);
    float32x4x2_t v = {{vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)), vreinterpretq_f32_u32(vshll_high_n_u16(h, 16))}};
    return v;
}
static inline float32x4_t load4_f32(const float *p) { return vld1q_f32(p); }
static inline float32x4_t load4_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
static inline float32x4_t load4_bf16(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
static inline float scalar_f32(float v) { return v; }
static inline float scalar_bf16(uint16_t v) {
    uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

// N activation rows against one float weight row: each 16 weights are loaded and converted once for the
// N. Four accumulators per row, one per 4 columns of the 16: the 16 floats in flight per row that x86's
// two 8-wide chains have, so the FMAs' latency is covered.
#define DEFINE_DOTN_FLOAT(NAME, N, TYPE, LOAD8, LOAD4, SCALAR)                                                 \
    static void NAME(const TYPE *w, const float *x, long cols, float *out) {                                   \
        float32x4_t acc[N][4];                                                                                 \
        for (int i = 0; i < N; i++)                                                                            \
            for (int k = 0; k < 4; k++) acc[i][k] = vdupq_n_f32(0);                                            \
        long c = 0;                                                                                            \
        for (; c + 16 <= cols; c += 16) {                                                                      \
            prefetch_ahead((const uint8_t *)(w + c));                                                          \
            float32x4x2_t w0 = LOAD8(w + c), w1 = LOAD8(w + c + 8);                                            \
            for (int i = 0; i < N; i++) {                                                                      \
                const float *xi = x + i * cols + c;                                                            \
                acc[i][0] = vfmaq_f32(acc[i][0], w0.val[0], vld1q_f32(xi));                                    \
                acc[i][1] = vfmaq_f32(acc[i][1], w0.val[1], vld1q_f32(xi + 4));                                \
                acc[i][2] = vfmaq_f32(acc[i][2], w1.val[0], vld1q_f32(xi + 8));                                \
                acc[i][3] = vfmaq_f32(acc[i][3], w1.val[1], vld1q_f32(xi + 12));                               \
            }                                                                                                  \
        }                                                                                                      \
        for (; c + 4 <= cols; c += 4) {                                                                        \
            float32x4_t wv = LOAD4(w + c);                                                                     \
            for (int i = 0; i < N; i++) acc[i][0] = vfmaq_f32(acc[i][0], wv, vld1q_f32(x + i * cols + c));     \
        }                                                                                                      \
        for (int i = 0; i < N; i++) {                                                                          \
            float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[i][0], acc[i][1]), vaddq_f32(acc[i][2], acc[i][3]))); \
            for (long k = c; k < cols; k++) s += SCALAR(w[k]) * x[i * cols + k];                               \
            out[i] = s;                                                                                        \
        }                                                                                                      \
    }

DEFINE_DOTN_FLOAT(dot_f32, 1, float, load8_f32, load4_f32, scalar_f32)
DEFINE_DOTN_FLOAT(dot_f16, 1, uint16_t, load8_f16, load4_f16, anelm_f16_to_f32)
DEFINE_DOTN_FLOAT(dot_bf16, 1, uint16_t, load8_bf16, load4_bf16, scalar_bf16)
DEFINE_DOTN_FLOAT(dot4_f32, 4, float, load8_f32, load4_f32, scalar_f32)
DEFINE_DOTN_FLOAT(dot4_f16, 4, uint16_t, load8_f16, load4_f16, anelm_f16_to_f32)
DEFINE_DOTN_FLOAT(dot4_bf16, 4, uint16_t, load8_bf16, load4_bf16, scalar_bf16)

// MARK: rows

#define KERNEL
#define MATMUL_ROWS neon_matmul_rows
#include "kernels_rows.h"

// MARK: conversions and activation quantization

void neon_f16_to_f32(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4x2_t v = load8_f16(src + i);
        vst1q_f32(dst + i, v.val[0]);
        vst1q_f32(dst + i + 4, v.val[1]);
    }
    for (; i < n; i++) dst[i] = anelm_f16_to_f32(src[i]);
}

void neon_bf16_to_f32(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4x2_t v = load8_bf16(src + i);
        vst1q_f32(dst + i, v.val[0]);
        vst1q_f32(dst + i + 4, v.val[1]);
    }
    for (; i < n; i++) dst[i] = scalar_bf16(src[i]);
}

// FCVTN rounds to nearest even (the default FPCR mode) with subnormals and overflow to infinity, as
// the portable conversion does.
void neon_f32_to_f16(const float *src, uint16_t *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(src + i)), vld1q_f32(src + i + 4));
        vst1q_u16(dst + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) dst[i] = anelm_f32_to_f16(src[i]);
}

// Bit for bit the portable quantization: the max-number min/max instructions are fmaxf/fminf (a NaN
// loses to a number), FRINTN is nearbyintf in the default rounding mode, and the clamp to the int16
// range comes before the conversion, as there.
void neon_quantize_q16(const float *x, anelm_block_q16 *out, long n) {
    const float32x4_t lowest = vdupq_n_f32(-32768.0f), highest = vdupq_n_f32(32767.0f);
    for (long b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float32x4_t f[8];
        float32x4_t m = vdupq_n_f32(0);  // the portable max starts at 0 (so an all-NaN block has amax 0)
        for (int k = 0; k < 8; k++) {
            f[k] = vld1q_f32(v + 4 * k);
            m = vmaxnmq_f32(m, vabsq_f32(f[k]));
        }
        float amax = vmaxnmvq_f32(m);
        float d = amax / 32767, id = d > 0 ? 1 / d : 0;
        const float32x4_t mul = vdupq_n_f32(id);
        int32x4_t sum = vdupq_n_s32(0);
        for (int k = 0; k < 8; k += 2) {
            float32x4_t q0 = vminnmq_f32(vmaxnmq_f32(vrndnq_f32(vmulq_f32(f[k], mul)), lowest), highest);
            float32x4_t q1 = vminnmq_f32(vmaxnmq_f32(vrndnq_f32(vmulq_f32(f[k + 1], mul)), lowest), highest);
            int32x4_t i0 = vcvtq_s32_f32(q0), i1 = vcvtq_s32_f32(q1);  // exact: whole numbers in range
            vst1q_s16(out[b].q + 4 * k, vcombine_s16(vmovn_s32(i0), vmovn_s32(i1)));
            sum = vaddq_s32(sum, vaddq_s32(i0, i1));
        }
        out[b].d = d;
        out[b].s = d * (float)vaddvq_s32(sum);
    }
}

// MARK: vector kernels

float neon_dot(const float *a, const float *b, long n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void neon_axpy(float a, const float *x, float *y, long n) {
    const float32x4_t va = vdupq_n_f32(a);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
        vst1q_f32(y + i + 4, vfmaq_f32(vld1q_f32(y + i + 4), va, vld1q_f32(x + i + 4)));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

// e^x for each lane, as kernels_avx2.c's exp8 (within 2 ulp of expf): x = n·ln 2 + r with |r| ≤ ln 2 / 2,
// a degree-6 polynomial in r (Cephes' expf coefficients), times 2^n through the exponent bits. Inputs
// are clamped to [-87.3, 88.0] so that 2^n stays a normal float: below, the result is ~1e-38 instead of
// 0; above, about 2.4e38. A NaN stays NaN (FMIN/FMAX propagate it, as expf does).
static inline float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.33f)), vdupq_n_f32(88.02f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);  // n is whole: exact
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

// x · sigmoid(k·x + c·x³) · up: SiLU (k 1, c 0) and the tanh form of GELU, since
// 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) exactly.
void neon_sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c) {
    const float32x4_t one = vdupq_n_f32(1), vk = vdupq_n_f32(k), vc = vdupq_n_f32(c);
    long i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = vld1q_f32(gate + i);
        float32x4_t u = vfmaq_f32(vmulq_f32(vk, x), vmulq_f32(vc, x), vmulq_f32(x, x));
        float32x4_t s = vdivq_f32(x, vaddq_f32(one, exp4(vnegq_f32(u))));
        vst1q_f32(gate + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    for (; i < n; i++) {
        float x = gate[i], u = k * x + c * x * x * x;
        gate[i] = x / (1.0f + expf(-u)) * up[i];
    }
}

float neon_softmax(float *x, long n) {
    float32x4_t m4 = vdupq_n_f32(-INFINITY);
    long i = 0;
    for (; i + 4 <= n; i += 4) m4 = vmaxq_f32(m4, vld1q_f32(x + i));
    float m = vmaxvq_f32(m4);
    for (long j = i; j < n; j++) m = fmaxf(m, x[j]);
    float32x4_t vm = vdupq_n_f32(m), s4 = vdupq_n_f32(0);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, e);
        s4 = vaddq_f32(s4, e);
    }
    double s = vaddvq_f32(s4);
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = (float)(1.0 / s);
    const float32x4_t vinv = vdupq_n_f32(inv);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
    return m + (float)log(s);
}

// Cache row j as f32 in `tmp` (head_dim a multiple of 4).
static inline const float *neon_cache_row(const void *base, int kv_type, long stride, long j, long head_dim, float *tmp) {
    if (kv_type == ANELM_F32) return (const float *)base + j * stride;
    const uint16_t *h = (const uint16_t *)base + j * stride;
    for (long d = 0; d < head_dim; d += 4) vst1q_f32(tmp + d, load4_f16(h + d));
    return tmp;
}

// anelm_attention for head sizes that are a multiple of 4, with the row conversions, dots and axpys
// inline (a call per cached row and head cost more than the arithmetic on x86). Two accumulators for
// the dots, over alternating 4-column steps.
void neon_attention(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale,
                    float softcap, float *scratch, float *out, float *lse) {
    float *scores = scratch, *tmp = scratch + group * count;
    for (long j = 0; j < count; j++) {
        const float *k = neon_cache_row(keys, kv_type, stride, j, head_dim, tmp);
        for (long g = 0; g < group; g++) {
            const float *qg = q + g * head_dim;
            float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
            long d = 0;
            for (; d + 8 <= head_dim; d += 8) {
                acc0 = vfmaq_f32(acc0, vld1q_f32(qg + d), vld1q_f32(k + d));
                acc1 = vfmaq_f32(acc1, vld1q_f32(qg + d + 4), vld1q_f32(k + d + 4));
            }
            if (d < head_dim) acc0 = vfmaq_f32(acc0, vld1q_f32(qg + d), vld1q_f32(k + d));
            float s = vaddvq_f32(vaddq_f32(acc0, acc1)) * scale;
            scores[g * count + j] = softcap > 0 ? tanhf(s / softcap) * softcap : s;
        }
    }
    for (long g = 0; g < group; g++) {
        float l = neon_softmax(scores + g * count, count);
        if (lse) lse[g] = l;
    }
    memset(out, 0, (size_t)(group * head_dim) * sizeof(float));
    for (long j = 0; j < count; j++) {
        const float *v = neon_cache_row(values, kv_type, stride, j, head_dim, tmp);
        for (long g = 0; g < group; g++) {
            float32x4_t p = vdupq_n_f32(scores[g * count + j]);
            float *o = out + g * head_dim;
            for (long d = 0; d < head_dim; d += 4) vst1q_f32(o + d, vfmaq_f32(vld1q_f32(o + d), p, vld1q_f32(v + d)));
        }
    }
}

#endif
