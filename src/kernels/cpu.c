/* cpu.c — CPUID-based feature detection for kernel dispatch.
 *
 * A feature is reported only when the CPU has it and the OS saves its
 * registers.  HEARTH_KERNELS may name a lower level to force (never a
 * higher one).
 */
#include "kernels/cpu.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

/* Reads CPUID directly (compilers differ in which feature names their
 * builtins know) and checks with XGETBV that the OS saves the vector state. */
static void detect(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
        bool f16c = c & (1u << 29);
        uint64_t xcr0 = osxsave ? xgetbv0() : 0;
        bool os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = (xcr0 & 0xe6) == 0xe6;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            features.avx2 = avx && os_avx && fma && f16c && (b & (1u << 5));
            features.avx512 = features.avx2 && os_avx512 && (b & (1u << 16)) && (b & (1u << 17)) &&
                              (b & (1u << 30)) && (b & (1u << 31));
            features.avx512_vbmi = features.avx512 && (c & (1u << 1));
            features.avx512_vnni = features.avx512 && (c & (1u << 11));
            if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
                features.avx512_bf16 = features.avx512 && (a & (1u << 5));
            }
        }
    }
#endif
    const char *force = getenv("HEARTH_KERNELS");
    if (force && !strcmp(force, "ref")) memset(&features, 0, sizeof features);
    if (force && !strcmp(force, "avx2")) {
        features.avx512 = features.avx512_vnni = features.avx512_bf16 = false;
        features.avx512_vbmi = false;
    }
}

const cpu_features *cpu_get_features(void) {
    pthread_once(&features_once, detect);
    return &features;
}

const char *cpu_kernel_name(void) {
    const cpu_features *f = cpu_get_features();
    if (f->avx512_vnni) return f->avx512_bf16 ? "avx512-vnni-bf16" : "avx512-vnni";
    if (f->avx512) return "avx512";
    if (f->avx2) return "avx2";
    return "ref";
}
