#ifndef ANELM_KERNELS_H
#define ANELM_KERNELS_H
// anelm's hot loops. Each x86_64 kernel has an AVX2/FMA/F16C version compiled with a per-function
// target attribute and chosen at run time, so the package needs no unsafe build flags; on arm64 the
// kernels have NEON versions (NEON is in the arm64 baseline). Every kernel also has a portable version
// (the reference the tests compare against).
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// GGML type ids (as in GGUF).
enum {
    ANELM_F32 = 0,
    ANELM_F16 = 1,
    ANELM_Q4_0 = 2,
    ANELM_Q4_1 = 3,
    ANELM_Q5_0 = 6,
    ANELM_Q5_1 = 7,
    ANELM_Q8_0 = 8,
    ANELM_Q4_K = 12,
    ANELM_Q5_K = 13,
    ANELM_Q6_K = 14,
    ANELM_BF16 = 30
};

/// The vector ISA levels of the kernels, each architecture's climbing from portable. x86_64: AVX2/FMA/F16C
/// (kernels_avx2.c), then the matrix kernels with 256-bit vpdpwssd in either encoding, each level its own
/// file: AVX-VNNI (VEX, 16 registers; kernels_avxvnni.c) and AVX512-VNNI + VL (EVEX, 32 registers and a
/// 512-bit float tile; kernels_avx512vnni.c). arm64: NEON.
enum { ANELM_ISA_PORTABLE = 0, ANELM_ISA_AVX2 = 1, ANELM_ISA_AVXVNNI = 2, ANELM_ISA_AVX512VNNI = 3, ANELM_ISA_NEON = 4 };
/// The level in use: the highest this CPU runs at or below the cap. Where a CPU has both VNNI levels
/// (AMD Zen 5) that is the AVX-512 one, which was faster there.
int anelm_isa_level(void);
/// 1 when this CPU (and OS) runs `level`.
int anelm_isa_supported(int level);
/// Caps the level (the tests compare every level with the portable reference): the kernels then use the
/// highest level this CPU runs at or below `level`, so a cap at ANELM_ISA_AVXVNNI on a CPU without
/// AVX-VNNI gives AVX2, and on arm64 any cap below ANELM_ISA_NEON gives portable. -1 returns to the default
/// cap: the level the environment variable ANELM_ISA names (see anelm_isa_named), else none.
void anelm_limit_isa(int level);
/// A level's name for ANELM_ISA ("portable", "avx2", "avxvnni", "avx512vnni", "neon"); NULL for no level.
const char *anelm_isa_name(int level);
/// The level of that name; -1 for none.
int anelm_isa_named(const char *name);
/// 1 when at least the AVX2/FMA/F16C kernels are in use.
int anelm_uses_avx2(void);

// Conversions.
float anelm_f16_to_f32(uint16_t h);
uint16_t anelm_f32_to_f16(float f);
void anelm_convert_f16_to_f32(const uint16_t *src, float *dst, long n);
void anelm_convert_bf16_to_f32(const uint16_t *src, float *dst, long n);
void anelm_convert_f32_to_f16(const float *src, uint16_t *dst, long n);
/// Dequantizes `n` elements (a whole number of blocks) of `type` to f32; returns 0 for an unknown type.
int anelm_dequantize(int type, const void *src, float *dst, long n);

/// Activations quantized for integer dot products with quantized weights: 32 values per block as
/// 16-bit integers, scale d, and d × Σq. Sixteen bits (not llama.cpp's eight) keep the rounding of
/// activations ~256× below that of the weights, so the fast path tracks the f32 reference; the
/// AVX2 cost is the same (two madd_epi16 instead of maddubs + madd per block).
typedef struct {
    float d;
    float s;
    int16_t q[32];
} anelm_block_q16;
void anelm_quantize_q16(const float *x, anelm_block_q16 *out, long n);

/// ggml's activation block types (llama.cpp multiplies each weight type by one of them: Q4_0/Q5_0/Q8_0 by
/// q8_0, Q4_1/Q5_1 by q8_1, the K-quants by q8_K), quantized as ggml does into anelm_block_q16 (eight-bit
/// values, ggml's rounding and scale rounding; q8_K's one scale per 256 values repeated in its 8 blocks).
/// Precision "ggml" multiplies these so that results follow llama.cpp's on the same file.
enum { ANELM_GGML_Q8_0 = 8, ANELM_GGML_Q8_1 = 9, ANELM_GGML_Q8_K = 15 };
void anelm_quantize_ggml(int kind, const float *x, anelm_block_q16 *out, long n);
/// out = x rounded to `type` (ANELM_F16 or ANELM_BF16) and back, as ggml rounds activations for f16/bf16
/// weights.
void anelm_round_f32(int type, const float *x, float *out, long n);

/// One activation block of eight tokens, interleaved for the prefill kernels: q[j][t] holds values 2j
/// and 2j + 1 of token t, so one 256-bit load gives a value pair of all eight tokens, and a weight pair
/// broadcast against it adds to eight tokens' sums at once; d and s are the tokens' block scales.
typedef struct {
    float d[8];
    float s[8];
    int16_t q[16][8][2];
} anelm_block_q16x8;
/// Interleaves eight tokens' quantized rows (`blocks` blocks each, one token after the other, as
/// anelm_quantize_q16 writes them) into `blocks` anelm_block_q16x8.
void anelm_interleave_q16x8(const anelm_block_q16 *xq, long blocks, anelm_block_q16x8 *out);

/// y[t·rows + r] = Σ_c W[r, c] · x[t·cols + c] for rows [row_begin, row_end) and all tokens.
/// f32/f16/bf16 weights read `x`; quantized weights read `xq` (x quantized with anelm_quantize_q16)
/// and, where not NULL, `xq8`: the first 8·⌊tokens/8⌋ tokens of `xq` interleaved (tokens/8 groups of
/// cols/32 blocks), which the x86 kernels of the quantized types use for those tokens.
/// K-quant super-blocks (256 values) span 8 activation blocks, each with its own scale; `cols`
/// must be a whole number of the weight type's blocks.
void anelm_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq, const anelm_block_q16x8 *xq8,
                       long tokens, float *y, long rows, long row_begin, long row_end);

/// Attention of `group` query heads (q: group × head_dim, contiguous) that share one key/value head,
/// over `count` cached positions: out[g] = Σ_j softmax_j(s_gj) · v_j with s_gj = scale · q_g·k_j, soft-capped
/// to cap · tanh(s / cap) when `softcap` > 0. Keys and values are `count` rows `stride` elements apart, of
/// `kv_type` ANELM_F32 or ANELM_F16; each row is read once for the whole group. `scratch` holds
/// group × count + head_dim floats; `out` is group × head_dim. Unless `lse` is NULL, lse[g] is the log of
/// Σ_j exp(s_gj): the weight with which this span's output merges with other spans' (split decoding).
void anelm_attention(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count, float scale,
                     float softcap, float *scratch, float *out, float *lse);

/// anelm_attention as llama.cpp's CPU backend computes it (precision "ggml"): the softmax's weights are rounded
/// to f16 before they multiply the values (the caller rounds the queries to f16, as ggml does before q·k with an
/// f16 cache). The plain loops, for comparing with llama.cpp rather than for speed.
void anelm_attention_ggml(const float *q, long group, long head_dim, const void *keys, const void *values, int kv_type, long stride, long count,
                          float scale, float softcap, float *scratch, float *out, float *lse);

// Vector kernels.
float anelm_dot(const float *a, const float *b, long n);
void anelm_axpy(float a, const float *x, float *y, long n);
void anelm_add(float *y, const float *x, long n);
void anelm_scale(float *x, float a, long n);
void anelm_rms_norm(const float *x, const float *w, float eps, long n, float *out);
/// Softmax in place; returns log Σ exp(x) (the log-sum-exp of the input).
float anelm_softmax(float *x, long n);
void anelm_silu_mul(float *gate, const float *up, long n);
/// gate = gelu_tanh(gate) · up (PyTorch's gelu(approximate="tanh"), Gemma's activation).
void anelm_gelu_tanh_mul(float *gate, const float *up, long n);

// A persistent pool of worker threads. `run` calls fn(ctx, i) for i in [0, count), spread over the
// workers and the caller, and returns when all are done.
typedef void (*anelm_task_fn)(void *ctx, long index);
typedef struct anelm_pool anelm_pool;
anelm_pool *anelm_pool_create(int threads);
void anelm_pool_destroy(anelm_pool *pool);
void anelm_pool_run(anelm_pool *pool, long count, anelm_task_fn fn, void *ctx);
int anelm_physical_cores(void);

#ifdef __cplusplus
}
#endif
#endif
