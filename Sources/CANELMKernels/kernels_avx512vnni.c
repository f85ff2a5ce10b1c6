// The matrix kernels of kernels_x86.h for CPUs with AVX512-VNNI and AVX512-VL but no AVX-VNNI (AMD Zen 4):
// the same 256-bit vpdpwssd, EVEX-encoded; called only after a CPU check.
#include "internal.h"
#if defined(__x86_64__)
#define ISA_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define ISA_DPWSSD _mm256_dpwssd_epi32
#define ISA_NAME(name) avx512vnni_##name
#include "kernels_x86.h"
#else
// Not x86_64: never called (the CPU check fails).
void avx512vnni_matmul_rows(int type, const void *w, size_t row_bytes, long cols, const float *x, const anelm_block_q16 *xq,
                         long tokens, float *y, long rows, long row_begin, long row_end) {
    (void)type; (void)w; (void)row_bytes; (void)cols; (void)x; (void)xq; (void)tokens; (void)y; (void)rows; (void)row_begin; (void)row_end;
}
#endif
