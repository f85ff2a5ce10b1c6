// Portable kernels, the choice of ISA level, and the dispatch to each level's versions (kernels_avx2.c and
// the x86 matrix kernels of kernels_x86.h; kernels_neon.c). Stand-ins for another architecture's versions:
// kernels_stubs.c.
#include "anelm_kernels.h"
#include "internal.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Dequantization must round as gguf-py/ggml do (a multiply, then an add, each rounded): no fusing.
// (GCC, which builds tools/neon-check, ignores the STDC pragma and takes its own.)
#if defined(__clang__) || !defined(__GNUC__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

// MARK: ISA levels

static const char *const isa_names[] = {"portable", "avx2", "avxvnni", "avx512vnni", "neon"};
#define ISA_LEVELS (int)(sizeof isa_names / sizeof *isa_names)
_Static_assert(ISA_LEVELS == ANELM_ISA_NEON + 1, "a name for every level, in the order of their numbers");

const char *anelm_isa_name(int level) { return level >= 0 && level < ISA_LEVELS ? isa_names[level] : NULL; }
int anelm_isa_named(const char *name) {
    for (int level = 0; level < ISA_LEVELS; level++)
        if (name && strcmp(name, isa_names[level]) == 0) return level;
    return -1;
}

static pthread_once_t isa_detection = PTHREAD_ONCE_INIT;
static unsigned supported_levels;  // bit L: this CPU (and OS) runs level L
static int default_cap = ISA_LEVELS - 1;  // no cap
static int level_in_use;

// The highest level this CPU runs at or below `cap`.
static int level_under(int cap) {
    int level = cap < ISA_LEVELS - 1 ? cap : ISA_LEVELS - 1;
    while (level > ANELM_ISA_PORTABLE && !(supported_levels >> level & 1)) level--;
    return level;
}

static void detect_isa_levels(void) {
    supported_levels = 1u << ANELM_ISA_PORTABLE;
#if defined(__x86_64__)
    // 256-bit vpdpwssd comes in two encodings: AVX-VNNI (VEX; Intel since Alder Lake, AMD Zen 5) and
    // AVX512-VNNI with AVX512-VL (EVEX; Intel servers, AMD Zen 4 and 5). Where both are (Zen 5) the AVX-512
    // level is above: its 32 registers and 512-bit float tile made the Zen 5 kernels faster
    // (`bench/kernel-bench block 1|3 1536 576 128|1`: F16 prefill 0.68 → 0.48 ns, Q4_1 decode 1.02 → 0.85).
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        supported_levels |= 1u << ANELM_ISA_AVX2;
        if (__builtin_cpu_supports("avxvnni")) supported_levels |= 1u << ANELM_ISA_AVXVNNI;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni"))
            supported_levels |= 1u << ANELM_ISA_AVX512VNNI;
    }
#elif defined(__aarch64__)
    supported_levels |= 1u << ANELM_ISA_NEON;  // NEON, FMA and f16 conversions are in the arm64 baseline
#endif
    // ANELM_ISA forces a level, for comparing the files of one CPU; a name that is no level, or a level this
    // CPU lacks, is said on stderr rather than passed over in silence.
    const char *forced = getenv("ANELM_ISA");
    if (forced && *forced) {
        int level = anelm_isa_named(forced);
        if (level < 0)
            fprintf(stderr, "anelm: ANELM_ISA=%s is not a kernel level (portable, avx2, avxvnni, avx512vnni, neon); using %s\n", forced,
                    isa_names[level_under(ISA_LEVELS - 1)]);
        else {
            default_cap = level;
            if (level_under(level) != level)
                fprintf(stderr, "anelm: ANELM_ISA=%s: this CPU does not run that level; using %s\n", forced, isa_names[level_under(level)]);
        }
    }
    level_in_use = level_under(default_cap);
}

int anelm_isa_level(void) {
    pthread_once(&isa_detection, detect_isa_levels);
    return level_in_use;
}
int anelm_isa_supported(int level) {
    pthread_once(&isa_detection, detect_isa_levels);
    return level >= 0 && level < ISA_LEVELS && (supported_levels >> level & 1);
}
void anelm_limit_isa(int level) {
    pthread_once(&isa_detection, detect_isa_levels);
    level_in_use = level_under(level < 0 ? default_cap : level);
}
int anelm_uses_avx2(void) {
    int level = anelm_isa_level();
    return level == ANELM_ISA_AVX2 || level == ANELM_ISA_AVXVNNI || level == ANELM_ISA_AVX512VNNI;
}
static int uses_neon(void) { return anelm_isa_level() == ANELM_ISA_NEON; }

// MARK: conversions

float anelm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {  // subnormal: normalize
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000 | (mant << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t anelm_f32_to_f16(float f) {  // round to nearest even
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp), half = 1u << (shift - 1);
        uint32_t r = mant >> shift, rest = mant & ((1u << shift) - 1);
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (mant >> 13), rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

void anelm_convert_f16_to_f32(const uint16_t *src, float *dst, long n) {
    if (anelm_uses_avx2()) {
        avx2_f16_to_f32(src, dst, n);
        return;
    }
    if (uses_neon()) {
        neon_f16_to_f32(src, dst, n);
        return;
    }
    for (long i = 0; i < n; i++) dst[i] = anelm_f16_to_f32(src[i]);
}

void anelm_convert_bf16_to_f32(const uint16_t *src, float *dst, long n) {
    if (uses_neon()) {
        neon_bf16_to_f32(src, dst, n);
        return;
    }
    for (long i = 0; i < n; i++) {
        uint32_t b = (uint32_t)src[i] << 16;
        memcpy(dst + i, &b, 4);
    }
}

void anelm_convert_f32_to_f16(const float *src, uint16_t *dst, long n) {
    if (anelm_uses_avx2()) {
        avx2_f32_to_f16(src, dst, n);
        return;
    }
    if (uses_neon()) {
        neon_f32_to_f16(src, dst, n);
        return;
    }
    for (long i = 0; i < n; i++) dst[i] = anelm_f32_to_f16(src[i]);
}

static uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

// Q5_0/Q5_1 value j (0–31) of a block: the nibble (low nibbles are values 0–15) and bit j of qh.
static int q5_value(const uint8_t *qs, uint32_t qh, int j) {
    int nibble = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    return nibble | (int)(((qh >> j) & 1) << 4);
}

// Q4_K/Q5_K value l (0–31) of sub-block i (0–7): 32 bytes of nibbles serve sub-blocks 2k (low) and
// 2k + 1 (high); Q5_K's fifth bit of sub-block i is bit i of qh[l].
static int q4_k_value(const uint8_t *qs, int i, int l) { return (qs[32 * (i / 2) + l] >> (4 * (i & 1))) & 0x0f; }
static int q5_k_value(const uint8_t *qh, const uint8_t *qs, int i, int l) { return q4_k_value(qs, i, l) | (((qh[l] >> i) & 1) << 4); }

// Q6_K value e (0–255), signed: each half of 128 has 64 bytes of low nibbles (values 0–63 low,
// 64–127 high) and 32 bytes of 2-bit pairs (bits 2k–2k+1 of byte l are value 32k + l).
static int q6_k_value(const uint8_t *ql, const uint8_t *qh, int e) {
    int h = e >> 7, w = e & 127;
    int low = (ql[64 * h + (w & 63)] >> (4 * (w >> 6))) & 0x0f;
    int high = (qh[32 * h + (w & 31)] >> (2 * (w >> 5))) & 3;
    return (low | (high << 4)) - 32;
}

int anelm_dequantize(int type, const void *src, float *dst, long n) {
    const uint8_t *p = src;
    switch (type) {
    case ANELM_F32: memcpy(dst, src, (size_t)n * 4); return 1;
    case ANELM_F16: anelm_convert_f16_to_f32(src, dst, n); return 1;
    case ANELM_BF16: anelm_convert_bf16_to_f32(src, dst, n); return 1;
    case ANELM_Q8_0:
        for (long b = 0; b < n / 32; b++, p += 34) {
            float d = anelm_f16_to_f32(load_u16(p));
            for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * (float)(int8_t)p[2 + j];
        }
        return 1;
    case ANELM_Q4_0:
        for (long b = 0; b < n / 32; b++, p += 18) {
            float d = anelm_f16_to_f32(load_u16(p));
            for (int j = 0; j < 16; j++) {
                dst[b * 32 + j] = d * (float)((p[2 + j] & 0x0f) - 8);
                dst[b * 32 + j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        return 1;
    case ANELM_Q4_1:
        for (long b = 0; b < n / 32; b++, p += 20) {
            float d = anelm_f16_to_f32(load_u16(p)), m = anelm_f16_to_f32(load_u16(p + 2));
            for (int j = 0; j < 16; j++) {
                dst[b * 32 + j] = d * (float)(p[4 + j] & 0x0f) + m;
                dst[b * 32 + j + 16] = d * (float)(p[4 + j] >> 4) + m;
            }
        }
        return 1;
    case ANELM_Q5_0:  // f16 d, 32 high bits, 16 bytes of nibbles; values q − 16
        for (long b = 0; b < n / 32; b++, p += 22) {
            float d = anelm_f16_to_f32(load_u16(p));
            uint32_t qh = load_u32(p + 2);
            for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * (float)(q5_value(p + 6, qh, j) - 16);
        }
        return 1;
    case ANELM_Q5_1:  // f16 d, f16 m, 32 high bits, 16 bytes of nibbles; values d·q + m
        for (long b = 0; b < n / 32; b++, p += 24) {
            float d = anelm_f16_to_f32(load_u16(p)), m = anelm_f16_to_f32(load_u16(p + 2));
            uint32_t qh = load_u32(p + 4);
            for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * (float)q5_value(p + 8, qh, j) + m;
        }
        return 1;
    case ANELM_Q4_K:  // f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles
    case ANELM_Q5_K:  // as Q4_K, with 32 bytes of fifth bits before the nibbles
        for (long b = 0; b < n / 256; b++) {
            float d = anelm_f16_to_f32(load_u16(p)), dmin = anelm_f16_to_f32(load_u16(p + 2));
            const uint8_t *qh = p + 16, *qs = type == ANELM_Q4_K ? p + 16 : p + 48;
            for (int i = 0; i < 8; i++) {
                int sc, m;
                anelm_scale_min_k4(p + 4, i, &sc, &m);
                float ds = d * (float)sc, dm = dmin * (float)m;
                for (int l = 0; l < 32; l++) {
                    int q = type == ANELM_Q4_K ? q4_k_value(qs, i, l) : q5_k_value(qh, qs, i, l);
                    dst[b * 256 + i * 32 + l] = ds * (float)q - dm;
                }
            }
            p += type == ANELM_Q4_K ? 144 : 176;
        }
        return 1;
    case ANELM_Q6_K:  // 128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales (one per 16), f16 d
        for (long b = 0; b < n / 256; b++, p += 210) {
            float d = anelm_f16_to_f32(load_u16(p + 208));
            for (int e = 0; e < 256; e++) {
                float ds = d * (float)(int8_t)p[192 + e / 16];
                dst[b * 256 + e] = ds * (float)q6_k_value(p, p + 128, e);
            }
        }
        return 1;
    default: return 0;
    }
}

void anelm_quantize_q16(const float *x, anelm_block_q16 *out, long n) {
    if (anelm_uses_avx2()) {
        avx2_quantize_q16(x, out, n);
        return;
    }
    if (uses_neon()) {
        neon_quantize_q16(x, out, n);
        return;
    }
    for (long b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 32767, id = d > 0 ? 1 / d : 0;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            float q = fminf(fmaxf(nearbyintf(v[j] * id), -32768.0f), 32767.0f);
            out[b].q[j] = (int16_t)q;
            sum += out[b].q[j];
        }
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}

// ggml's activation types, into anelm_block_q16 so that the same kernels multiply them. Written after
// llama.cpp's quantize_row_q8_0/q8_1 (x86) and quantize_row_q8_K_ref: the rounding (to nearest, ties to
// even) and the scales' own rounding (f16 for q8_0/q8_1, f32 for q8_K) are theirs, so the integer products
// are the ones llama.cpp computes.
void anelm_quantize_ggml(int kind, const float *x, anelm_block_q16 *out, long n) {
    if (kind == ANELM_GGML_Q8_K) {
        for (long k = 0; k < n / 256; k++) {
            const float *v = x + k * 256;
            float amax = 0, max = 0;
            for (int j = 0; j < 256; j++)
                if (fabsf(v[j]) > amax) amax = fabsf(v[j]), max = v[j];
            const float iscale = amax > 0 ? -127.f / max : 0, d = amax > 0 ? 1 / iscale : 0;
            for (int b = 0; b < 8; b++) {
                int sum = 0;
                for (int j = 0; j < 32; j++) {
                    int q = amax > 0 ? (int)nearbyintf(iscale * v[b * 32 + j]) : 0;
                    out[k * 8 + b].q[j] = (int16_t)(q < 127 ? q : 127);
                    sum += out[k * 8 + b].q[j];
                }
                out[k * 8 + b].d = d;
                out[k * 8 + b].s = d * (float)sum;
            }
        }
        return;
    }
    for (long b = 0; b < n / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
        const float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            out[b].q[j] = (int16_t)nearbyintf(v[j] * id);
            sum += out[b].q[j];
        }
        out[b].d = anelm_f16_to_f32(anelm_f32_to_f16(d));
        // q8_1 carries d·Σq as f16 (computed with the unrounded d); q8_0 has no sum, and the weight types
        // that multiply it (no minimum) never read one.
        out[b].s = kind == ANELM_GGML_Q8_1 ? anelm_f16_to_f32(anelm_f32_to_f16(d * (float)sum)) : out[b].d * (float)sum;
    }
}

void anelm_round_f32(int type, const float *x, float *out, long n) {
    for (long i = 0; i < n; i++) {
        if (type == ANELM_F16) {
            out[i] = anelm_f16_to_f32(anelm_f32_to_f16(x[i]));
        } else {  // bf16, as ggml's GGML_FP32_TO_BF16: to nearest even, NaN kept quiet
            uint32_t u;
            memcpy(&u, &x[i], 4);
            u = (u & 0x7fffffff) > 0x7f800000 ? (u | 0x00400000) & 0xffff0000 : (u + (0x7fff + ((u >> 16) & 1))) & 0xffff0000;
            memcpy(&out[i], &u, 4);
        }
    }
}

// MARK: dot products of one weight row with one activation row

static float row_dot_portable(int type, const uint8_t *w, long cols, const float *x, const anelm_block_q16 *xq) {
    float sum = 0;
    switch (type) {
    case ANELM_F32: {
        const float *f = (const float *)w;
        for (long c = 0; c < cols; c++) sum += f[c] * x[c];
        break;
    }
    case ANELM_F16:
        for (long c = 0; c < cols; c++) sum += anelm_f16_to_f32(load_u16(w + 2 * c)) * x[c];
        break;
    case ANELM_BF16:
        for (long c = 0; c < cols; c++) {
            uint32_t b = (uint32_t)load_u16(w + 2 * c) << 16;
            float f;
            memcpy(&f, &b, 4);
            sum += f * x[c];
        }
        break;
    case ANELM_Q8_0:
        for (long b = 0; b < cols / 32; b++, w += 34) {
            int s = 0;
            for (int j = 0; j < 32; j++) s += (int8_t)w[2 + j] * xq[b].q[j];
            sum += anelm_f16_to_f32(load_u16(w)) * xq[b].d * (float)s;
        }
        break;
    case ANELM_Q4_0:
        for (long b = 0; b < cols / 32; b++, w += 18) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += ((w[2 + j] & 0x0f) - 8) * xq[b].q[j] + ((w[2 + j] >> 4) - 8) * xq[b].q[j + 16];
            sum += anelm_f16_to_f32(load_u16(w)) * xq[b].d * (float)s;
        }
        break;
    case ANELM_Q4_1:
        for (long b = 0; b < cols / 32; b++, w += 20) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += (w[4 + j] & 0x0f) * xq[b].q[j] + (w[4 + j] >> 4) * xq[b].q[j + 16];
            sum += anelm_f16_to_f32(load_u16(w)) * xq[b].d * (float)s + anelm_f16_to_f32(load_u16(w + 2)) * xq[b].s;
        }
        break;
    case ANELM_Q5_0:
    case ANELM_Q5_1: {
        int q5_0 = type == ANELM_Q5_0, size = q5_0 ? 22 : 24, bias = q5_0 ? 16 : 0;
        const int header = q5_0 ? 2 : 4;
        for (long b = 0; b < cols / 32; b++, w += size) {
            uint32_t qh = load_u32(w + header);
            int s = 0;
            for (int j = 0; j < 32; j++) s += (q5_value(w + header + 4, qh, j) - bias) * xq[b].q[j];
            sum += anelm_f16_to_f32(load_u16(w)) * xq[b].d * (float)s;
            if (!q5_0) sum += anelm_f16_to_f32(load_u16(w + 2)) * xq[b].s;
        }
        break;
    }
    case ANELM_Q4_K:
    case ANELM_Q5_K:
        // Sub-block i of a super-block lines up with activation block 8·super + i.
        for (long b = 0; b < cols / 256; b++) {
            float d = anelm_f16_to_f32(load_u16(w)), dmin = anelm_f16_to_f32(load_u16(w + 2));
            const uint8_t *qh = w + 16, *qs = type == ANELM_Q4_K ? w + 16 : w + 48;
            for (int i = 0; i < 8; i++) {
                const anelm_block_q16 *a = xq + 8 * b + i;
                int sc, m, s = 0;
                anelm_scale_min_k4(w + 4, i, &sc, &m);
                for (int l = 0; l < 32; l++) s += (type == ANELM_Q4_K ? q4_k_value(qs, i, l) : q5_k_value(qh, qs, i, l)) * a->q[l];
                sum += d * (float)sc * a->d * (float)s - dmin * (float)m * a->s;
            }
            w += type == ANELM_Q4_K ? 144 : 176;
        }
        break;
    case ANELM_Q6_K:
        // Two scales per activation block; 64-bit sum: 32 products of |q·scale| ≤ 4096 and |x| ≤ 32767 overflow int32.
        for (long b = 0; b < cols / 256; b++, w += 210) {
            float d = anelm_f16_to_f32(load_u16(w + 208));
            for (int i = 0; i < 8; i++) {
                const anelm_block_q16 *a = xq + 8 * b + i;
                long long s = 0;
                for (int l = 0; l < 32; l++) s += (long long)q6_k_value(w, w + 128, 32 * i + l) * (int8_t)w[192 + 2 * i + l / 16] * a->q[l];
                sum += d * a->d * (float)s;
            }
        }
        break;
    }
    return sum;
}

void anelm_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                       long tokens, float *y, long rows, long row_begin, long row_end) {
    // Each x86 version is kernels_x86.h's matrix kernels compiled in the named file, the row loop and the
    // switch over weight types from kernels_rows.h (its MATMUL_ROWS names the function ISA_NAME(matmul_rows)).
    switch (anelm_isa_level()) {
    case ANELM_ISA_AVX512VNNI:  // kernels_avx512vnni.c: kernels_x86.h for AVX512-VNNI + VL
        avx512vnni_matmul_rows(type, w, row_bytes, cols, x, xq, xq8, tokens, y, rows, row_begin, row_end);
        return;
    case ANELM_ISA_AVXVNNI:  // kernels_avxvnni.c: kernels_x86.h for AVX-VNNI
        avxvnni_matmul_rows(type, w, row_bytes, cols, x, xq, xq8, tokens, y, rows, row_begin, row_end);
        return;
    case ANELM_ISA_AVX2:  // kernels_avx2.c: kernels_x86.h for AVX2/FMA/F16C
        avx2_matmul_rows(type, w, row_bytes, cols, x, xq, xq8, tokens, y, rows, row_begin, row_end);
        return;
    case ANELM_ISA_NEON:  // kernels_neon.c: its dot kernels, kernels_rows.h's row loop
        neon_matmul_rows(type, w, row_bytes, cols, x, xq, xq8, tokens, y, rows, row_begin, row_end);
        return;
    default: break;
    }
    for (long r = row_begin; r < row_end; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * row_bytes;
        for (long t = 0; t < tokens; t++) y[t * rows + r] = row_dot_portable(type, wr, cols, x + t * cols, xq ? xq + t * (cols / 32) : NULL);
    }
}

void anelm_interleave_q16x8(const anelm_block_q16 *xq, long blocks, anelm_block_q16x8 *out) {
    for (long b = 0; b < blocks; b++)
        for (int t = 0; t < 8; t++) {
            const anelm_block_q16 *a = xq + t * blocks + b;
            out[b].d[t] = a->d;
            out[b].s[t] = a->s;
            for (int j = 0; j < 16; j++) {
                out[b].q[j][t][0] = a->q[2 * j];
                out[b].q[j][t][1] = a->q[2 * j + 1];
            }
        }
}

// MARK: vector kernels

float anelm_dot(const float *a, const float *b, long n) {
    if (anelm_uses_avx2()) return avx2_dot(a, b, n);
    if (uses_neon()) return neon_dot(a, b, n);
    float s = 0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void anelm_axpy(float a, const float *x, float *y, long n) {
    if (anelm_uses_avx2()) {
        avx2_axpy(a, x, y, n);
        return;
    }
    if (uses_neon()) {
        neon_axpy(a, x, y, n);
        return;
    }
    for (long i = 0; i < n; i++) y[i] += a * x[i];
}

// Row j of a key/value cache as f32 (f16 rows converted into `tmp`).
static const float *cache_row(const void *base, int kv_type, long stride, long j, long head_dim, float *tmp) {
    if (kv_type == ANELM_F32) return (const float *)base + j * stride;
    anelm_convert_f16_to_f32((const uint16_t *)base + j * stride, tmp, head_dim);
    return tmp;
}

// The plain attention: scores, softmax, weighted values, one step at a time. With `f16_weights` the
// softmax's weights are rounded to f16 before they multiply the values, as llama.cpp's CPU backend does.
static void attention_portable(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count,
                               float scale, float softcap, float *scratch, float *out, float *lse, int f16_weights) {
    float *scores = scratch, *tmp = scratch + group * count;
    // 1. Scores: each key row converted once, dotted with every query of the group.
    for (long j = 0; j < count; j++) {
        const float *k = cache_row(keys, kv_type, stride, j, head_dim, tmp);
        for (long g = 0; g < group; g++) {
            float s = anelm_dot(q + g * head_dim, k, head_dim) * scale;
            scores[g * count + j] = softcap > 0 ? tanhf(s / softcap) * softcap : s;
        }
    }
    // 2. Softmax of each query's scores.
    for (long g = 0; g < group; g++) {
        float l = anelm_softmax(scores + g * count, count);
        if (lse) lse[g] = l;
    }
    if (f16_weights) anelm_round_f32(ANELM_F16, scores, scores, group * count);
    // 3. Weighted values: each value row converted once, added into every query's output.
    memset(out, 0, (size_t)(group * head_dim) * sizeof(float));
    for (long j = 0; j < count; j++) {
        const float *v = cache_row(values, kv_type, stride, j, head_dim, tmp);
        for (long g = 0; g < group; g++) anelm_axpy(scores[g * count + j], v, out + g * head_dim, head_dim);
    }
}

void anelm_attention(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale,
                     float softcap, float *scratch, float *out, float *lse) {
    if (anelm_uses_avx2() && head_dim % 8 == 0) {
        avx2_attention(q, group, head_dim, keys, values, kv_type, stride, count, scale, softcap, scratch, out, lse);
        return;
    }
    if (uses_neon() && head_dim % 4 == 0) {
        neon_attention(q, group, head_dim, keys, values, kv_type, stride, count, scale, softcap, scratch, out, lse);
        return;
    }
    attention_portable(q, group, head_dim, keys, values, kv_type, stride, count, scale, softcap, scratch, out, lse, 0);
}

void anelm_attention_ggml(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count,
                          float scale, float softcap, float *scratch, float *out, float *lse) {
    attention_portable(q, group, head_dim, keys, values, kv_type, stride, count, scale, softcap, scratch, out, lse, 1);
}

void anelm_add(float *y, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += x[i];
}
void anelm_scale(float *x, float a, long n) {
    for (long i = 0; i < n; i++) x[i] *= a;
}

void anelm_rms_norm(const float *x, const float *w, float eps, long n, float *out) {
    double ss = 0;  // double: the sum of squares of a wide row must not lose the small terms
    for (long i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (long i = 0; i < n; i++) out[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

float anelm_softmax(float *x, long n) {
    if (n <= 0) return -INFINITY;
    if (anelm_uses_avx2()) return avx2_softmax(x, n);
    if (uses_neon()) return neon_softmax(x, n);
    float m = x[0];
    for (long i = 1; i < n; i++) m = fmaxf(m, x[i]);
    double s = 0;
    for (long i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = (float)(1.0 / s);
    for (long i = 0; i < n; i++) x[i] *= inv;
    return m + (float)log(s);
}

// x · sigmoid(k·x + c·x³) · up (SiLU: k 1, c 0; GELU's tanh form: k 2√(2/π), c 0.044715·k).
static void sigmoid_gate_mul(float *gate, const float *up, long n, float k, float c) {
    if (anelm_uses_avx2()) {
        avx2_sigmoid_gate_mul(gate, up, n, k, c);
        return;
    }
    if (uses_neon()) {
        neon_sigmoid_gate_mul(gate, up, n, k, c);
        return;
    }
    for (long i = 0; i < n; i++) {
        float x = gate[i], u = k * x + c * x * x * x;
        gate[i] = x / (1.0f + expf(-u)) * up[i];
    }
}

void anelm_silu_mul(float *gate, const float *up, long n) { sigmoid_gate_mul(gate, up, n, 1, 0); }

void anelm_gelu_tanh_mul(float *gate, const float *up, long n) {
    const float k = 2 * 0.7978845608028654f;  // 2·√(2/π): 0.5·x·(1 + tanh(u)) = x·sigmoid(2u)
    sigmoid_gate_mul(gate, up, n, k, k * 0.044715f);
}
