// The matrix kernels of kernels_x86.h for CPUs with AVX512-VNNI and AVX512-VL (AMD Zen 4 and 5, Intel
// servers): avx512vnni_matmul_rows, run at ANELM_ISA_AVX512VNNI, which only such a CPU reaches. The same
// 256-bit vpdpwssd, EVEX-encoded, and the float tile in 512-bit registers. Tuned for Zen 4: with generic
// tuning clang splits most vpdpwssd back into vpmaddwd + vpaddd, which made the Q8_0 and Q4_1 kernels
// 4–7% slower there (`bench/kernel-bench block 8 256 576 16`: 0.765 vs 0.724 ns).
#include "internal.h"
#if defined(__x86_64__)
#define ISA_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,tune=znver4"
#define ISA_DPWSSD _mm256_dpwssd_epi32
#define ISA_NAME(name) avx512vnni_##name
// 32 vector registers: the float prefill tile is 4 rows × 4 tokens (SmolLM2's 576×1536 F16 matrix at
// 128 tokens: 0.93 → 0.76 ns per row, token and 32 weights against 2 rows, on Zen 4), in 512-bit registers
// (SmolLM2's 1536×576 F16 matrix at 128 tokens on Zen 5: 0.60–0.65 → 0.47–0.48 ns against 256-bit).
#define TILE_ROWS 4
#define TILE_ZMM
#include "kernels_x86.h"
#endif
