#ifndef ANELM_KERNELS_H
#define ANELM_KERNELS_H
#include <stddef.h>
#include <stdint.h>
/* Placeholder: the kernels helper replaces this file. */
int anelm_kernels_version(void);
#endif
