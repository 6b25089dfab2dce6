/* cpu.c — CPUID-based feature detection for kernel dispatch.
 *
 * The compiler's own __builtin_cpu_supports reads CPUID and the OS's
 * XSAVE state, so a feature is reported only when it can really be used.
 * HEARTH_KERNELS may name a lower level to force (never a higher one).
 */
#include "kernels/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    features.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
    features.avx512 = features.avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
    features.avx512_vnni = features.avx512 && __builtin_cpu_supports("avx512vnni");
    features.avx512_vbmi = features.avx512 && __builtin_cpu_supports("avx512vbmi");
#if defined(__clang__) || __GNUC__ >= 11
    features.avx512_bf16 = features.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
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
