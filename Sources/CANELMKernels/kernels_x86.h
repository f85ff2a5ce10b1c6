// The x86_64 matrix kernels, written once and compiled three times, one file per ISA level: kernels_avx2.c
// (AVX2/FMA/F16C), kernels_avxvnni.c (the same plus AVX-VNNI, whose vpdpwssd fuses one multiply-add and the
// add of the two halves of a block) and kernels_avx512vnni.c (the same instruction on 256-bit registers
// through AVX512-VNNI + VL, 32 registers, and the float prefill tile in 512-bit ones). Before including this
// file the includer defines ISA_TARGET (the target attribute string), ISA_DPWSSD (the vpdpwssd intrinsic,
// or none) and ISA_NAME(name) (the exported prefix), and may define TILE_ROWS and TILE_ZMM (the float tile's
// rows and 512-bit vectors); kernels_rows.h, included at the end, defines ISA_NAME(matmul_rows).
// (The quantized kernels stay at 256 bits: at 512 they ran 20–40% slower on the development machine,
// whose 512-bit integer ops issue on fewer ports.)
#include "internal.h"
#include <immintrin.h>
#include <string.h>

#define KERNEL __attribute__((target(ISA_TARGET)))
#ifndef TILE_ROWS
#define TILE_ROWS 2  // rows of the float prefill tile: 16 vector registers hold 2 × 4 accumulators
#endif

// One 32-value block's weights as int16, in two 256-bit halves (elements 0–15, 16–31).
typedef struct {
    __m256i lo, hi;
} wblock;
KERNEL static inline wblock wblock_of(__m256i lo, __m256i hi) {
    wblock w = {lo, hi};
    return w;
}
KERNEL static inline wblock wblock_minus(wblock w, short bias) {
    const __m256i b = _mm256_set1_epi16(bias);
    return wblock_of(_mm256_sub_epi16(w.lo, b), _mm256_sub_epi16(w.hi, b));
}

// How far ahead of the row being read the kernels prefetch. The weights stream from memory once per
// token; on the development machine hardware prefetch alone left the decode kernels waiting on memory
// (5.4 GB/s of the ~11 GB/s one core can read), and 4 KB ahead doubled the decode rate (BENCHMARKS.md).
// The hint is non-temporal: a decode step reads each weight once, and keeping the lines out of the
// outer caches' way made SmolLM2's F16 decode matmuls 5–12% faster on AMD Zen 4 (2 threads; Q4_1 2–3%),
// prefill no slower (a chunk's rows stay in L1 for its token groups either way).
#define PREFETCH_AHEAD 4096

KERNEL static inline void prefetch_ahead(const uint8_t *p) { _mm_prefetch((const char *)p + PREFETCH_AHEAD, _MM_HINT_NTA); }
// The first PREFETCH_AHEAD bytes of a range, which the loops' own prefetches do not cover: a task is a
// few tens of KB, so its cold start is a real share of it.
KERNEL static inline void prefetch_start(const uint8_t *p, size_t bytes) {
    size_t end = bytes < PREFETCH_AHEAD ? bytes : PREFETCH_AHEAD;
    for (size_t i = 0; i < end; i += 64) _mm_prefetch((const char *)p + i, _MM_HINT_T0);
}

KERNEL static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KERNEL static inline float half(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

// acc + the pairwise int16 products of a and b summed into int32 lanes: one vpdpwssd where the ISA has it.
KERNEL static inline __m256i dpwssd(__m256i acc, __m256i a, __m256i b) {
#ifdef ISA_DPWSSD
    return ISA_DPWSSD(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// Σ over a block of 32 weights times 16-bit activations, as partial sums in a float vector.
KERNEL static inline __m256 block_dot(wblock w, const int16_t *a) {
    __m256i p = _mm256_madd_epi16(w.lo, _mm256_loadu_si256((const __m256i *)a));
    return _mm256_cvtepi32_ps(dpwssd(p, w.hi, _mm256_loadu_si256((const __m256i *)(a + 16))));
}

// One block's weights as int16: Q4 nibbles (low nibbles are elements 0–15, high 16–31), Q8 bytes.
KERNEL static inline wblock unpack_q4(const uint8_t *qs) {
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qs));
    return wblock_of(_mm256_and_si256(b, _mm256_set1_epi16(0x0f)), _mm256_srli_epi16(b, 4));
}
KERNEL static inline wblock unpack_q8(const uint8_t *qs) {
    return wblock_of(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)qs)), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16))));
}
// Q5_0/Q5_1 from the 32 high bits: Q4 nibbles, plus 16 where bit j of qh is set for value j.
KERNEL static inline wblock unpack_q5(const uint8_t *qh_qs) {
    uint32_t qh;
    memcpy(&qh, qh_qs, 4);
    wblock w = unpack_q4(qh_qs + 4);
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, (short)0x8000);
    const __m256i sixteen = _mm256_set1_epi16(16);
    __m256i h0 = _mm256_and_si256(_mm256_set1_epi16((short)(qh & 0xffff)), bit);
    __m256i h1 = _mm256_and_si256(_mm256_set1_epi16((short)(qh >> 16)), bit);
    return wblock_of(_mm256_or_si256(w.lo, _mm256_and_si256(_mm256_cmpeq_epi16(h0, bit), sixteen)),
                     _mm256_or_si256(w.hi, _mm256_and_si256(_mm256_cmpeq_epi16(h1, bit), sixteen)));
}

// A block's f16 scale d (and min m, for types with one) as floats in lanes 0 (and 1); they sit at
// the block's start, as anelm_block_q16's d and s do, so one conversion makes both...
KERNEL static inline __m128 block_scales(const uint8_t *w, int has_min) {
    uint32_t bits = 0;
    memcpy(&bits, w, has_min ? 4 : 2);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)bits));
}
// ...and one multiply by the activation block's (d, s) gives lane 0 d·d_x, which scales the integer
// dot product, and lane 1 m·s_x, the min term.
KERNEL static inline __m128 times_activation_scales(__m128 scales, const anelm_block_q16 *a) {
    return _mm_mul_ps(scales, _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)&a->d)));
}

// One weight row of 32-value blocks against one activation row (decode). Two accumulators over
// alternating blocks, so consecutive blocks' FMAs do not wait on each other.
#define DEFINE_DOT1(NAME, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)                                    \
    KERNEL static __m256 NAME##_block(const uint8_t *w, const anelm_block_q16 *a, __m128 *scale) { \
        wblock q = UNPACK(w + OFFSET);                                                             \
        if (BIAS) q = wblock_minus(q, BIAS);                                                       \
        *scale = times_activation_scales(block_scales(w, HAS_MIN), a);                             \
        return block_dot(q, a->q);                                                                 \
    }                                                                                              \
    KERNEL static void NAME(const uint8_t *w, const anelm_block_q16 *a, long blocks, float *out) { \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                             \
        __m128 min0 = _mm_setzero_ps(), min1 = _mm_setzero_ps(), s0, s1;                           \
        long b = 0;                                                                                \
        for (; b + 2 <= blocks; b += 2, w += 2 * BLOCK) {                                          \
            prefetch_ahead(w);                                                                     \
            __m256 p0 = NAME##_block(w, a + b, &s0), p1 = NAME##_block(w + BLOCK, a + b + 1, &s1); \
            acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(s0), p0, acc0);                           \
            acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(s1), p1, acc1);                           \
            if (HAS_MIN) {                                                                         \
                min0 = _mm_add_ps(min0, s0);                                                       \
                min1 = _mm_add_ps(min1, s1);                                                       \
            }                                                                                      \
        }                                                                                          \
        for (; b < blocks; b++, w += BLOCK) {                                                      \
            __m256 p0 = NAME##_block(w, a + b, &s0);                                               \
            acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(s0), p0, acc0);                           \
            if (HAS_MIN) min0 = _mm_add_ps(min0, s0);                                              \
        }                                                                                          \
        float mins = HAS_MIN ? _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(min0, min1))) : 0;         \
        *out = hsum(_mm256_add_ps(acc0, acc1)) + mins;                                             \
    }

// One weight row against four activation rows (prefill): each block's weights are loaded and
// unpacked once for the four.
#define DEFINE_DOT4(NAME, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)                                                      \
    KERNEL static void NAME(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out) {                  \
        __m256 acc[4];                                                                                               \
        __m128 mins[4];                                                                                              \
        for (int i = 0; i < 4; i++) {                                                                                \
            acc[i] = _mm256_setzero_ps();                                                                            \
            mins[i] = _mm_setzero_ps();                                                                              \
        }                                                                                                            \
        for (long b = 0; b < blocks; b++, w += BLOCK) {                                                              \
            prefetch_ahead(w);                                                                                       \
            wblock q = UNPACK(w + OFFSET);                                                                           \
            if (BIAS) q = wblock_minus(q, BIAS);                                                                     \
            __m128 ws = block_scales(w, HAS_MIN);                                                                    \
            for (int i = 0; i < 4; i++) {                                                                            \
                const anelm_block_q16 *a = xq + i * blocks + b;                                                      \
                __m128 s = times_activation_scales(ws, a);                                                           \
                acc[i] = _mm256_fmadd_ps(_mm256_broadcastss_ps(s), block_dot(q, a->q), acc[i]);                      \
                if (HAS_MIN) mins[i] = _mm_add_ps(mins[i], s);                                                       \
            }                                                                                                        \
        }                                                                                                            \
        for (int i = 0; i < 4; i++) out[i] = hsum(acc[i]) + (HAS_MIN ? _mm_cvtss_f32(_mm_movehdup_ps(mins[i])) : 0); \
    }

// Prefill from eight interleaved tokens (anelm_block_q16x8). A chunk of weight rows is unpacked once
// into int16 blocks with float scales (kept in L1/L2 while every eight-token group meets it); then each
// weight value pair, broadcast from memory, multiplies the same pair of eight tokens in one vpdpwssd.
// The lanes are tokens, so the float work of a block (convert, scale, add) serves eight (row, token)
// pairs instead of one: on Zen 4 that work, not the integer products, had bounded the four-token
// kernel (0.72 ns per row, token and block; with the scale's multiply and broadcast removed, 0.52).
#define EIGHT_SCRATCH 49152
// Groups are taken EIGHT_SPAN_BYTES of activations at a time, each span meeting every chunk of rows (unpacked
// again per span): a long prompt's activations (10,000 tokens of a 4,096-wide layer: 92 MB) then come from the
// cache, not from memory once per chunk. Every sum is computed as without spans.
#define EIGHT_SPAN_BYTES (2 * 1024 * 1024)
#define SCRATCH_BLOCK 72  // per block of a scratch row: 32 int16 values, then (after all blocks) d and m
KERNEL static inline __m256i pair_of(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// R unpacked rows (`stride` bytes apart) against one group of eight tokens; out[r] is row r's eight sums.
// Two integer accumulators per row (even and odd pairs), so 2R independent chains hide vpdpwssd's latency;
// each holds 16 products of |w| ≤ 4096 (Q6_K with its scales folded in) and |a| ≤ 32767, within int32,
// and the two are added as floats (their int32 sum could overflow).
#define DEFINE_EIGHT_ROWS(NAME, R, HAS_MIN)                                                                                 \
    KERNEL static inline void NAME(const uint8_t *s, size_t stride, long blocks, const anelm_block_q16x8 *a, __m256 *out) { \
        __m256 acc[R], mins[R];                                                                                             \
        for (int r = 0; r < R; r++) {                                                                                       \
            acc[r] = _mm256_setzero_ps();                                                                                   \
            mins[r] = _mm256_setzero_ps();                                                                                  \
        }                                                                                                                   \
        const float *d = (const float *)(s + blocks * 64), *m = d + blocks;                                                 \
        for (long b = 0; b < blocks; b++, a++) {                                                                            \
            __m256i p0[R], p1[R];                                                                                           \
            for (int r = 0; r < R; r++) {                                                                                   \
                p0[r] = _mm256_setzero_si256();                                                                             \
                p1[r] = _mm256_setzero_si256();                                                                             \
            }                                                                                                               \
            for (int j = 0; j < 16; j += 2) {                                                                               \
                __m256i a0 = _mm256_loadu_si256((const __m256i *)a->q[j]);                                                  \
                __m256i a1 = _mm256_loadu_si256((const __m256i *)a->q[j + 1]);                                              \
                for (int r = 0; r < R; r++) {                                                                               \
                    const uint8_t *q = s + r * stride + b * 64 + 4 * j;                                                     \
                    p0[r] = dpwssd(p0[r], a0, pair_of(q));                                                                  \
                    p1[r] = dpwssd(p1[r], a1, pair_of(q + 4));                                                              \
                }                                                                                                           \
            }                                                                                                               \
            __m256 da = _mm256_loadu_ps(a->d);                                                                              \
            for (int r = 0; r < R; r++) {                                                                                   \
                const float *dr = (const float *)((const uint8_t *)d + r * stride);                                         \
                __m256 p = _mm256_add_ps(_mm256_cvtepi32_ps(p0[r]), _mm256_cvtepi32_ps(p1[r]));                             \
                acc[r] = _mm256_fmadd_ps(p, _mm256_mul_ps(da, _mm256_set1_ps(dr[b])), acc[r]);                              \
                if (HAS_MIN) {                                                                                              \
                    const float *mr = (const float *)((const uint8_t *)m + r * stride);                                     \
                    mins[r] = _mm256_fmadd_ps(_mm256_loadu_ps(a->s), _mm256_set1_ps(mr[b]), mins[r]);                       \
                }                                                                                                           \
            }                                                                                                               \
        }                                                                                                                   \
        for (int r = 0; r < R; r++) out[r] = HAS_MIN ? _mm256_add_ps(acc[r], mins[r]) : acc[r];                             \
    }

// A weight row as the eight-token kernels read it: per 32-value block 32 int16 values (64 bytes), then
// every block's scale d, then every block's min term m (the sums gain m · the activation block's s).
#define DEFINE_UNPACK_BLOCKS(NAME, BLOCK, UNPACK, OFFSET, BIAS, HAS_MIN)        \
    KERNEL static inline void NAME(const uint8_t *w, long blocks, uint8_t *s) { \
        float *d = (float *)(s + blocks * 64), *m = d + blocks;                 \
        for (long b = 0; b < blocks; b++, w += BLOCK) {                         \
            prefetch_ahead(w);                                                  \
            wblock q = UNPACK(w + OFFSET);                                      \
            if (BIAS) q = wblock_minus(q, BIAS);                                \
            _mm256_storeu_si256((__m256i *)(s + b * 64), q.lo);                 \
            _mm256_storeu_si256((__m256i *)(s + b * 64 + 32), q.hi);            \
            __m128 ws = block_scales(w, HAS_MIN);                               \
            d[b] = _mm_cvtss_f32(ws);                                           \
            m[b] = _mm_cvtss_f32(_mm_movehdup_ps(ws));                          \
        }                                                                       \
    }
// K-quant super-blocks: eight blocks each, with their own scale and (subtracted) min.
#define DEFINE_UNPACK_SUPERBLOCKS(NAME, BLOCK, UNPACK)                             \
    KERNEL static inline void NAME(const uint8_t *w, long blocks, uint8_t *s) {    \
        float *d = (float *)(s + blocks * 64), *m = d + blocks;                    \
        for (long sb = 0; sb < blocks / 8; sb++, w += BLOCK) {                     \
            for (int line = 0; line < BLOCK; line += 64) prefetch_ahead(w + line); \
            __m256i q[16];                                                         \
            float scale[8], min[8];                                                \
            UNPACK(w, q, scale, min);                                              \
            for (int k = 0; k < 8; k++) {                                          \
                long b = 8 * sb + k;                                               \
                _mm256_storeu_si256((__m256i *)(s + b * 64), q[2 * k]);            \
                _mm256_storeu_si256((__m256i *)(s + b * 64 + 32), q[2 * k + 1]);   \
                d[b] = scale[k];                                                   \
                m[b] = -min[k];                                                    \
            }                                                                      \
        }                                                                          \
    }

// The eight-token path of one weight type: unpack a chunk of rows into the scratch, run every token
// group over it four rows at a time (the rest one by one), store the sums.
#define DEFINE_EIGHT(NAME, UNPACK_ROW, HAS_MIN)                                                                                                                \
    DEFINE_EIGHT_ROWS(NAME##_x4, 4, HAS_MIN)                                                                                                                   \
    DEFINE_EIGHT_ROWS(NAME##_x1, 1, HAS_MIN)                                                                                                                   \
    KERNEL static long NAME(const uint8_t *w, size_t row_bytes, long cols, const anelm_block_q16x8 *xq8, long tokens, float *y, long rows, long r0, long r1) { \
        long groups = xq8 ? tokens / 8 : 0, blocks = cols / 32;                                                                                                \
        size_t stride = (size_t)blocks * SCRATCH_BLOCK;                                                                                                        \
        if (groups == 0 || stride > EIGHT_SCRATCH) return 0;                                                                                                   \
        _Alignas(64) uint8_t scratch[EIGHT_SCRATCH];                                                                                                           \
        long chunk = (long)(EIGHT_SCRATCH / stride);                                                                                                           \
        long span = (long)(EIGHT_SPAN_BYTES / ((size_t)blocks * sizeof(anelm_block_q16x8)));                                                                  \
        span = span < 1 ? 1 : span;                                                                                                                            \
        for (long g0 = 0; g0 < groups; g0 += span) {                                                                                                           \
          long g1 = g0 + span < groups ? g0 + span : groups;                                                                                                   \
          for (long c0 = r0; c0 < r1; c0 += chunk) {                                                                                                           \
            long c1 = c0 + chunk < r1 ? c0 + chunk : r1;                                                                                                       \
            for (long r = c0; r < c1; r++) UNPACK_ROW(w + (size_t)r * row_bytes, blocks, scratch + (size_t)(r - c0) * stride);                                 \
            for (long g = g0; g < g1; g++) {                                                                                                                   \
                const anelm_block_q16x8 *a = xq8 + g * blocks;                                                                                                 \
                float *yg = y + g * 8 * rows;                                                                                                                  \
                long r = c0;                                                                                                                                   \
                for (; r < c1;) {                                                                                                                              \
                    int n = r + 4 <= c1 ? 4 : 1;                                                                                                               \
                    __m256 out[4];                                                                                                                             \
                    if (n == 4) NAME##_x4(scratch + (size_t)(r - c0) * stride, stride, blocks, a, out);                                                        \
                    else NAME##_x1(scratch + (size_t)(r - c0) * stride, stride, blocks, a, out);                                                               \
                    for (int k = 0; k < n; k++) {                                                                                                              \
                        float v[8];                                                                                                                            \
                        _mm256_storeu_ps(v, out[k]);                                                                                                           \
                        for (int t = 0; t < 8; t++) yg[t * rows + r + k] = v[t];                                                                               \
                    }                                                                                                                                          \
                    r += n;                                                                                                                                    \
                }                                                                                                                                              \
            }                                                                                                                                                  \
          }                                                                                                                                                    \
        }                                                                                                                                                      \
        return groups * 8;                                                                                                                                     \
    }

// K-quant super-blocks unpack to 8 activation-block-sized pieces: q[2k], q[2k + 1] are values
// 32k…32k + 15 and 32k + 16…32k + 31 as int16, scale[k] multiplies their dot product with
// activation block k, and min[k]·(its d·Σq) is subtracted.
KERNEL static inline void k4_scales(const uint8_t *p, float *scale, float *min) {
    float d = half(p), dmin = half(p + 2);
    for (int k = 0; k < 8; k++) {
        int sc, m;
        anelm_scale_min_k4(p + 4, k, &sc, &m);
        scale[k] = d * (float)sc;
        min[k] = dmin * (float)m;
    }
}
// 128 bytes of nibbles: 32 bytes j serve sub-blocks 2j (low nibbles) and 2j + 1 (high).
KERNEL static inline void k4_nibbles(const uint8_t *qs, __m256i *q) {
    const __m256i low = _mm256_set1_epi16(0x0f);
    for (int j = 0; j < 4; j++) {
        __m256i b0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 32 * j)));
        __m256i b1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 32 * j + 16)));
        q[4 * j] = _mm256_and_si256(b0, low);
        q[4 * j + 1] = _mm256_and_si256(b1, low);
        q[4 * j + 2] = _mm256_srli_epi16(b0, 4);
        q[4 * j + 3] = _mm256_srli_epi16(b1, 4);
    }
}
KERNEL static inline void unpack_q4_k(const uint8_t *p, __m256i *q, float *scale, float *min) {
    k4_scales(p, scale, min);
    k4_nibbles(p + 16, q);
}
KERNEL static inline void unpack_q5_k(const uint8_t *p, __m256i *q, float *scale, float *min) {
    // Q4_K's scales; the nibbles come after 32 bytes of fifth bits (bit k of byte l: sub-block k, value l).
    k4_scales(p, scale, min);
    k4_nibbles(p + 48, q);
    const uint8_t *qh = p + 16;
    const __m256i one = _mm256_set1_epi16(1);
    __m256i h0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)qh));
    __m256i h1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qh + 16)));
    for (int k = 0; k < 8; k++) {
        q[2 * k] = _mm256_or_si256(q[2 * k], _mm256_slli_epi16(_mm256_and_si256(h0, one), 4));
        q[2 * k + 1] = _mm256_or_si256(q[2 * k + 1], _mm256_slli_epi16(_mm256_and_si256(h1, one), 4));
        h0 = _mm256_srli_epi16(h0, 1);
        h1 = _mm256_srli_epi16(h1, 1);
    }
}
KERNEL static inline void unpack_q6_k(const uint8_t *p, __m256i *q, float *scale, float *min) {
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
            if (k >= 2) {
                l0 = _mm256_srli_epi16(l0, 4);
                l1 = _mm256_srli_epi16(l1, 4);
            }
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
#define DEFINE_KDOT(NAME, N, BLOCK, UNPACK, HAS_MIN)                                                                                                       \
    KERNEL static void NAME(const uint8_t *w, const anelm_block_q16 *xq, long blocks, float *out) {                                                        \
        __m256 acc0[N], acc1[N];                                                                                                                           \
        float mins[N];                                                                                                                                     \
        for (int i = 0; i < N; i++) {                                                                                                                      \
            acc0[i] = _mm256_setzero_ps();                                                                                                                 \
            acc1[i] = _mm256_setzero_ps();                                                                                                                 \
            mins[i] = 0;                                                                                                                                   \
        }                                                                                                                                                  \
        for (long s = 0; s < blocks / 8; s++, w += BLOCK) {                                                                                                \
            for (int line = 0; line < BLOCK; line += 64) prefetch_ahead(w + line);                                                                         \
            __m256i q[16];                                                                                                                                 \
            float scale[8], min[8];                                                                                                                        \
            UNPACK(w, q, scale, min);                                                                                                                      \
            for (int i = 0; i < N; i++) {                                                                                                                  \
                const anelm_block_q16 *a = xq + i * blocks + 8 * s;                                                                                        \
                for (int k = 0; k < 8; k += 2) {                                                                                                           \
                    acc0[i] = _mm256_fmadd_ps(_mm256_set1_ps(scale[k] * a[k].d), block_dot(wblock_of(q[2 * k], q[2 * k + 1]), a[k].q), acc0[i]);           \
                    acc1[i] =                                                                                                                              \
                        _mm256_fmadd_ps(_mm256_set1_ps(scale[k + 1] * a[k + 1].d), block_dot(wblock_of(q[2 * k + 2], q[2 * k + 3]), a[k + 1].q), acc1[i]); \
                    if (HAS_MIN) mins[i] += min[k] * a[k].s + min[k + 1] * a[k + 1].s;                                                                     \
                }                                                                                                                                          \
            }                                                                                                                                              \
        }                                                                                                                                                  \
        for (int i = 0; i < N; i++) out[i] = hsum(_mm256_add_ps(acc0[i], acc1[i])) - mins[i];                                                              \
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
DEFINE_KDOT(dot_q4_k, 1, 144, unpack_q4_k, 1)
DEFINE_KDOT(dot_q5_k, 1, 176, unpack_q5_k, 1)
DEFINE_KDOT(dot_q6_k, 1, 210, unpack_q6_k, 0)
DEFINE_KDOT(dot4_q4_k, 4, 144, unpack_q4_k, 1)
DEFINE_KDOT(dot4_q5_k, 4, 176, unpack_q5_k, 1)
DEFINE_KDOT(dot4_q6_k, 4, 210, unpack_q6_k, 0)

DEFINE_UNPACK_BLOCKS(unpack_row_q8_0, 34, unpack_q8, 2, 0, 0)
DEFINE_UNPACK_BLOCKS(unpack_row_q4_0, 18, unpack_q4, 2, 8, 0)
DEFINE_UNPACK_BLOCKS(unpack_row_q4_1, 20, unpack_q4, 4, 0, 1)
DEFINE_UNPACK_BLOCKS(unpack_row_q5_0, 22, unpack_q5, 2, 16, 0)
DEFINE_UNPACK_BLOCKS(unpack_row_q5_1, 24, unpack_q5, 4, 0, 1)
DEFINE_UNPACK_SUPERBLOCKS(unpack_row_q4_k, 144, unpack_q4_k)
DEFINE_UNPACK_SUPERBLOCKS(unpack_row_q5_k, 176, unpack_q5_k)
DEFINE_UNPACK_SUPERBLOCKS(unpack_row_q6_k, 210, unpack_q6_k)
DEFINE_EIGHT(eight_q8_0, unpack_row_q8_0, 0)
DEFINE_EIGHT(eight_q4_0, unpack_row_q4_0, 0)
DEFINE_EIGHT(eight_q4_1, unpack_row_q4_1, 1)
DEFINE_EIGHT(eight_q5_0, unpack_row_q5_0, 0)
DEFINE_EIGHT(eight_q5_1, unpack_row_q5_1, 1)
DEFINE_EIGHT(eight_q4_k, unpack_row_q4_k, 1)
DEFINE_EIGHT(eight_q5_k, unpack_row_q5_k, 1)
DEFINE_EIGHT(eight_q6_k, unpack_row_q6_k, 0)
#define EIGHT_TOKEN_KERNELS 1

// Float weights: 8 values as f32.
KERNEL static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
KERNEL static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
KERNEL static inline __m256 load8_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline float scalar_f32(float v) { return v; }
static inline float scalar_bf16(uint16_t v) {
    uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

// N activation rows against one float weight row: each 8 weights are loaded and converted once for the
// N. Two accumulators per row over alternating steps: one chain per row would wait out the FMA latency
// (4 cycles) and run at half the FMA throughput. f32 weights use it for one row too (N = 1), and their
// tile is four-token calls (below): a row's sum then has one order whichever kernel computes it, so on
// the reference precision a batched pass equals one pass per sequence bit for bit (the NEON kernels have
// one order by construction). Two chains of f32 still stream ~16 bytes a cycle, above a core's share of
// memory bandwidth.
#define DEFINE_DOTN_FLOAT(NAME, N, TYPE, LOAD8, SCALAR)                                                          \
    KERNEL static void NAME(const TYPE *w, const float *x, long cols, float *out) {                              \
        __m256 acc[N], acc2[N];                                                                                  \
        for (int i = 0; i < N; i++) {                                                                            \
            acc[i] = _mm256_setzero_ps();                                                                        \
            acc2[i] = _mm256_setzero_ps();                                                                       \
        }                                                                                                        \
        long c = 0;                                                                                              \
        for (; c + 2 * 8 <= cols; c += 2 * 8) {                                                                  \
            prefetch_ahead((const uint8_t *)(w + c));                                                            \
            __m256 w0 = LOAD8(w + c), w1 = LOAD8(w + c + 8);                                                     \
            for (int i = 0; i < N; i++) {                                                                        \
                acc[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * cols + c), acc[i]);                         \
                acc2[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * cols + c + 8), acc2[i]);                   \
            }                                                                                                    \
        }                                                                                                        \
        for (; c + 8 <= cols; c += 8) {                                                                          \
            __m256 wv = LOAD8(w + c);                                                                            \
            for (int i = 0; i < N; i++) acc[i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i * cols + c), acc[i]); \
        }                                                                                                        \
        for (int i = 0; i < N; i++) {                                                                            \
            float s = hsum(_mm256_add_ps(acc[i], acc2[i]));                                                      \
            for (long k = c; k < cols; k++) s += SCALAR(w[k]) * x[i * cols + k];                                 \
            out[i] = s;                                                                                          \
        }                                                                                                        \
    }

// One float weight row against one activation row (decode): four accumulators over 32 columns a step.
// With two the FMA latency (4 cycles) capped a core at two FMAs per 4 cycles, 16 f16 weights (32 bytes)
// a 4-cycle round, about 28 GB/s: below what two cores can stream.
#define DEFINE_DOT1_FLOAT(NAME, TYPE, LOAD8, SCALAR)                                                                            \
    KERNEL static void NAME(const TYPE *w, const float *x, long cols, float *out) {                                             \
        __m256 acc[4];                                                                                                          \
        for (int i = 0; i < 4; i++) acc[i] = _mm256_setzero_ps();                                                               \
        long c = 0;                                                                                                             \
        for (; c + 32 <= cols; c += 32) {                                                                                       \
            prefetch_ahead((const uint8_t *)(w + c));                                                                           \
            if (sizeof(TYPE) == 4) prefetch_ahead((const uint8_t *)(w + c + 16));                                               \
            for (int i = 0; i < 4; i++) acc[i] = _mm256_fmadd_ps(LOAD8(w + c + 8 * i), _mm256_loadu_ps(x + c + 8 * i), acc[i]); \
        }                                                                                                                       \
        for (; c + 8 <= cols; c += 8) acc[0] = _mm256_fmadd_ps(LOAD8(w + c), _mm256_loadu_ps(x + c), acc[0]);                   \
        float s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));                            \
        for (; c < cols; c++) s += SCALAR(w[c]) * x[c];                                                                         \
        *out = s;                                                                                                               \
    }

DEFINE_DOTN_FLOAT(dot_f32, 1, float, load8_f32, scalar_f32)
DEFINE_DOT1_FLOAT(dot_f16, uint16_t, load8_f16, anelm_f16_to_f32)
DEFINE_DOT1_FLOAT(dot_bf16, uint16_t, load8_bf16, scalar_bf16)
DEFINE_DOTN_FLOAT(dot4_f32, 4, float, load8_f32, scalar_f32)
DEFINE_DOTN_FLOAT(dot4_f16, 4, uint16_t, load8_f16, anelm_f16_to_f32)
DEFINE_DOTN_FLOAT(dot4_bf16, 4, uint16_t, load8_bf16, scalar_bf16)

// TILE_ROWS float weight rows against four activation rows (prefill), 4·TILE_ROWS accumulators: each
// activation vector is loaded once for all the rows and each weight vector once for the four tokens.
// Two rows take 6 loads per 8 FMAs where one row at a time takes 5 per 4, so the FMAs rather than the
// loads set the pace; with 32 vector registers (AVX-512) four rows take 8 per 16. With TILE_ZMM (the
// includer's choice, for CPUs with AVX-512F) the tile's vectors are 512-bit.
#ifdef TILE_ZMM
typedef __m512 tile_vec;
#define TILE_LANES 16
#define tile_zero _mm512_setzero_ps
#define tile_fmadd _mm512_fmadd_ps
#define tile_load_x _mm512_loadu_ps
#define tile_sum _mm512_reduce_add_ps
KERNEL static inline __m512 tile_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
KERNEL static inline __m512 tile_load_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
#else
typedef __m256 tile_vec;
#define TILE_LANES 8
#define tile_zero _mm256_setzero_ps
#define tile_fmadd _mm256_fmadd_ps
#define tile_load_x _mm256_loadu_ps
#define tile_sum hsum
#define tile_load_f16 load8_f16
#define tile_load_bf16 load8_bf16
#endif
#define DEFINE_TILE4_FLOAT(NAME, TYPE, LOAD, SCALAR)                                                        \
    KERNEL static void NAME(const TYPE *w, size_t row_bytes, const float *x, long cols, float *out) {       \
        const TYPE *row[TILE_ROWS];                                                                         \
        for (int k = 0; k < TILE_ROWS; k++) row[k] = (const TYPE *)((const uint8_t *)w + k * row_bytes);    \
        tile_vec acc[4 * TILE_ROWS];                                                                        \
        for (int i = 0; i < 4 * TILE_ROWS; i++) acc[i] = tile_zero();                                       \
        long c = 0;                                                                                         \
        for (; c + TILE_LANES <= cols; c += TILE_LANES) {                                                   \
            if (c % (sizeof(TYPE) == 4 ? 16 : 2 * TILE_LANES) == 0)                                         \
                for (int k = 0; k < TILE_ROWS; k++) prefetch_ahead((const uint8_t *)(row[k] + c));          \
            tile_vec wk[TILE_ROWS];                                                                         \
            for (int k = 0; k < TILE_ROWS; k++) wk[k] = LOAD(row[k] + c);                                   \
            for (int i = 0; i < 4; i++) {                                                                   \
                tile_vec xi = tile_load_x(x + i * cols + c);                                                \
                for (int k = 0; k < TILE_ROWS; k++) acc[4 * k + i] = tile_fmadd(wk[k], xi, acc[4 * k + i]); \
            }                                                                                               \
        }                                                                                                   \
        for (int k = 0; k < TILE_ROWS; k++)                                                                 \
            for (int i = 0; i < 4; i++) {                                                                   \
                float s = tile_sum(acc[4 * k + i]);                                                         \
                for (long j = c; j < cols; j++) s += SCALAR(row[k][j]) * x[i * cols + j];                   \
                out[4 * k + i] = s;                                                                         \
            }                                                                                               \
    }

// f32: four-token calls per row, so that a row's sum has the dot kernels' order (see DEFINE_DOTN_FLOAT).
KERNEL static inline void tile4_f32(const float *w, size_t row_bytes, const float *x, long cols, float *out) {
    for (int k = 0; k < TILE_ROWS; k++) dot4_f32((const float *)((const uint8_t *)w + k * row_bytes), x, cols, out + 4 * k);
}
DEFINE_TILE4_FLOAT(tile4_f16, uint16_t, tile_load_f16, anelm_f16_to_f32)
DEFINE_TILE4_FLOAT(tile4_bf16, uint16_t, tile_load_bf16, scalar_bf16)
#define FLOAT_TILE_KERNELS 1

#define MATMUL_ROWS ISA_NAME(matmul_rows)
#include "kernels_rows.h"
