/* cpu.h — what this processor can run, decided once at start-up. */
#ifndef HEARTH_KERNELS_CPU_H
#define HEARTH_KERNELS_CPU_H

#include <stdbool.h>

typedef struct cpu_features {
    bool avx2;        /* with FMA and F16C */
    bool avx512;      /* F, BW, VL, DQ */
    bool avx512_vnni; /* vpdpbusd */
    bool avx512_vbmi; /* vpermb, vpermt2b */
    bool avx512_bf16; /* vdpbf16ps */
} cpu_features;

/* The features of this CPU, possibly lowered by HEARTH_KERNELS=ref|avx2|avx512
 * (for tests and benchmarks of a narrower machine). */
const cpu_features *cpu_get_features(void);
/* A short name of the widest kernel set in use: "ref", "avx2", "avx512-vnni" … */
const char *cpu_kernel_name(void);

#endif
