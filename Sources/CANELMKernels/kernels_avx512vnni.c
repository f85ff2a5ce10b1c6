// The matrix kernels of kernels_x86.h for CPUs with AVX512-VNNI and AVX512-VL but no AVX-VNNI (AMD Zen 4):
// the same 256-bit vpdpwssd, EVEX-encoded; called only after a CPU check.
#include "internal.h"
#if defined(__x86_64__)
#define ISA_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define ISA_DPWSSD _mm256_dpwssd_epi32
#define ISA_NAME(name) avx512vnni_##name
#include "kernels_x86.h"
#endif
