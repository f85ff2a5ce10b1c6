#include "anelm_kernels.h"
int anelm_kernels_version(void) { return 1; }
