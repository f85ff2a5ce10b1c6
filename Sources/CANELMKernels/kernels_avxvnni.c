// The matrix kernels of kernels_x86.h for CPUs with AVX-VNNI; called only after a CPU check.
#include "internal.h"
#if defined(__x86_64__)
#define ISA_TARGET "avx2,fma,f16c,avxvnni"
#define ISA_DPWSSD _mm256_dpwssd_avx_epi32
#define ISA_NAME(name) avxvnni_##name
#include "kernels_x86.h"
#endif
