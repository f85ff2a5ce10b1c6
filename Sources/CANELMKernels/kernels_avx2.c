// AVX2/FMA/F16C kernels, compiled for those features per function; called only after a CPU check. The
// vector kernels below serve every x86 level; the matrix kernels, avx2_matmul_rows, come from kernels_x86.h.
#include "internal.h"
#if defined(__x86_64__)
#define ISA_TARGET "avx2,fma,f16c"
#define ISA_NAME(name) avx2_##name
#include "kernels_x86.h"
#include <math.h>

#define AVX2 KERNEL

AVX2 void avx2_f16_to_f32(const uint16_t *src, float *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = anelm_f16_to_f32(src[i]);
}

// e^x for each lane, within 2 ulp of expf: x = n·ln 2 + r with |r| ≤ ln 2 / 2, a degree-6 polynomial in
// r (Cephes' expf coefficients), times 2^n through the exponent bits. Inputs are clamped to
// [-87.3, 88.0] so that 2^n stays a normal float: below, the result is ~1e-38 instead of 0; above,
// about 2.4e38.
AVX2 static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33f)), _mm256_set1_ps(88.02f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// x · sigmoid(k·x + c·x³) · up: SiLU (k 1, c 0) and the tanh form of GELU, since
// 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) exactly.
AVX2 void avx2_sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c) {
    long i = 0;
    const __m256 one = _mm256_set1_ps(1), vk = _mm256_set1_ps(k), vc = _mm256_set1_ps(c);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        __m256 u = _mm256_fmadd_ps(_mm256_mul_ps(vc, x), _mm256_mul_ps(x, x), _mm256_mul_ps(vk, x));
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), u))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float x = gate[i], u = k * x + c * x * x * x;
        gate[i] = x / (1.0f + expf(-u)) * up[i];
    }
}

AVX2 float avx2_softmax(float *x, long n) {
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 8 <= n; i += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    for (long j = i; j < n; j++) m = fmaxf(m, x[j]);
    __m256 vm = _mm256_set1_ps(m), s8 = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s8 = _mm256_add_ps(s8, e);
    }
    double s = hsum(s8);
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    __m256 inv = _mm256_set1_ps((float)(1.0 / s));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= (float)(1.0 / s);
    return m + (float)log(s);
}

AVX2 void avx2_f32_to_f16(const float *src, uint16_t *dst, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = anelm_f32_to_f16(src[i]);
}

AVX2 void avx2_quantize_q16(const float *x, anelm_block_q16 *out, long n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (long b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
        // max_ps returns its second operand when the first is NaN: with the running max second, NaNs are
        // skipped, as the portable fmaxf does.
        __m256 m = _mm256_setzero_ps();
        m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), m);
        m = _mm256_max_ps(_mm256_andnot_ps(sign, v1), m);
        m = _mm256_max_ps(_mm256_andnot_ps(sign, v2), m);
        m = _mm256_max_ps(_mm256_andnot_ps(sign, v3), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 32767, id = d > 0 ? 1 / d : 0;
        __m256 mul = _mm256_set1_ps(id), low = _mm256_set1_ps(-32768.0f), high = _mm256_set1_ps(32767.0f);
        // Clamped in float first, as the portable code does (NaN becomes -32768, ±inf the ends; cvtps
        // would turn either into INT_MIN), then rounded to nearest even.
#define r (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define q16(v) _mm256_cvtps_epi32(_mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, mul), low), high), r))
        __m256i i0 = q16(v0), i1 = q16(v1), i2 = q16(v2), i3 = q16(v3);
#undef q16
        // Packs interleave 128-bit lanes; the permute restores order.
        __m256i p0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
        __m256i p1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i2, i3), 0xD8);
        _mm256_storeu_si256((__m256i *)out[b].q, p0);
        _mm256_storeu_si256((__m256i *)(out[b].q + 16), p1);
        __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(p0, _mm256_set1_epi16(1)), _mm256_madd_epi16(p1, _mm256_set1_epi16(1)));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
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

// Eight values of a key/value cache from element `offset`, as f32.
AVX2 static inline __m256 cache8(const void *base, int f16, long offset) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + offset))) : _mm256_loadu_ps((const float *)base + offset);
}

// The sums of eight vectors as one vector (lane i: Σ v[i]): a transposing add, ~20 instructions
// instead of eight horizontal sums of ~6.
AVX2 static inline __m256 hsum8(const __m256 *v) {
    __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]), t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Scores of query `q` against keys [j0, j1): eight keys at a time (eight accumulators, one transposing
// add), then the rest one by one.
AVX2 static inline void avx2_scores(const float *q, long head_dim, const void *keys, int f16, long stride, long j0, long j1, float scale, float *scores) {
    long j = j0;
    for (; j + 8 <= j1; j += 8) {
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (long d = 0; d < head_dim; d += 8) {
            __m256 qv = _mm256_loadu_ps(q + d);
            for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(qv, cache8(keys, f16, (j + i) * stride + d), acc[i]);
        }
        _mm256_storeu_ps(scores + j, _mm256_mul_ps(hsum8(acc), _mm256_set1_ps(scale)));
    }
    for (; j < j1; j++) {
        __m256 acc = _mm256_setzero_ps();
        for (long d = 0; d < head_dim; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), cache8(keys, f16, j * stride + d), acc);
        scores[j] = hsum(acc) * scale;
    }
}

// out += Σ_{j in [j0, j1)} p_j · v_j, 64 dimensions at a time in registers, then 8 at a time. (The
// widths are constants: with a variable count of accumulators the compiler kept them on the stack,
// and each FMA waited on the store of the one before; that loop was 40% of the attention's time.)
AVX2 static inline void weighted_values64(const float *p, const void *values, int f16, long stride, long d0, long j0, long j1, float *out) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_loadu_ps(out + 8 * i);
    for (long j = j0; j < j1; j++) {
        __m256 pj = _mm256_set1_ps(p[j]);
        for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(pj, cache8(values, f16, j * stride + d0 + 8 * i), acc[i]);
    }
    for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + 8 * i, acc[i]);
}
AVX2 static inline void weighted_values8(const float *p, const void *values, int f16, long stride, long d0, long j0, long j1, float *out) {
    __m256 acc = _mm256_loadu_ps(out);
    for (long j = j0; j < j1; j++) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), cache8(values, f16, j * stride + d0), acc);
    _mm256_storeu_ps(out, acc);
}
AVX2 static inline void avx2_weighted_values(const float *p, long head_dim, const void *values, int f16, long stride, long j0, long j1, float *out) {
    long d0 = 0;
    for (; d0 + 64 <= head_dim; d0 += 64) weighted_values64(p, values, f16, stride, d0, j0, j1, out + d0);
    for (; d0 < head_dim; d0 += 8) weighted_values8(p, values, f16, stride, d0, j0, j1, out + d0);
}

// anelm_attention for head sizes that are a multiple of 8. Positions go in blocks of 64, each read from
// memory once and then from L1 by every query of the group.
AVX2 void avx2_attention(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale,
                         float softcap, float *scratch, float *out, float *lse) {
    const int f16 = kv_type == ANELM_F16;
    const long block = 64;
    for (long j0 = 0; j0 < count; j0 += block) {
        long j1 = j0 + block < count ? j0 + block : count;
        for (long g = 0; g < group; g++) avx2_scores(q + g * head_dim, head_dim, keys, f16, stride, j0, j1, scale, scratch + g * count);
    }
    for (long g = 0; g < group; g++) {
        float *scores = scratch + g * count;
        if (softcap > 0)
            for (long j = 0; j < count; j++) scores[j] = tanhf(scores[j] / softcap) * softcap;
        float l = anelm_softmax(scores, count);
        if (lse) lse[g] = l;
    }
    memset(out, 0, (size_t)(group * head_dim) * sizeof(float));
    for (long j0 = 0; j0 < count; j0 += block) {
        long j1 = j0 + block < count ? j0 + block : count;
        for (long g = 0; g < group; g++) avx2_weighted_values(scratch + g * count, head_dim, values, f16, stride, j0, j1, out + g * head_dim);
    }
}

#endif
