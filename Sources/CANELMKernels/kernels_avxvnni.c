// The matrix kernels of kernels_x86.h for CPUs with AVX-VNNI (the VEX-encoded 256-bit vpdpwssd; Intel since
// Alder Lake, AMD Zen 5): avxvnni_matmul_rows, run at ANELM_ISA_AVXVNNI, which only a CPU with AVX-VNNI reaches.
#include "internal.h"
#if defined(__x86_64__)
#define ISA_TARGET "avx2,fma,f16c,avxvnni"
#define ISA_DPWSSD _mm256_dpwssd_avx_epi32
#define ISA_NAME(name) avxvnni_##name
#include "kernels_x86.h"
#endif
