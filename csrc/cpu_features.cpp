// CPU feature detection: cpuid + XGETBV on x86, the architecture itself on
// aarch64. Built with baseline flags: nothing here executes an instruction
// the CPU may lack.
#include "cpu_features.h"

#if defined(_MSC_VER)
#include <intrin.h>
#endif
#if (defined(__x86_64__) || defined(__i386__)) && !defined(_MSC_VER)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace rnnkit {

namespace {

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#define RNNKIT_X86 1

void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
    int v[4];
    __cpuidex(v, int(leaf), int(sub));
    for (int i = 0; i < 4; ++i) r[i] = unsigned(v[i]);
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

// XCR0: which register states the OS saves on context switch.
unsigned long long xgetbv0() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

// Linux hands out the tile data state (8 KiB per thread) only to a process
// that asks for it; granted once, it holds for every thread and child.
bool amx_permitted() {
#if defined(__linux__) && defined(__x86_64__)
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#elif defined(_WIN32)
    return true;   // Windows enables AMX state for every process that has XCR0's bits
#else
    return false;
#endif
}

void detect_x86(CpuFeatures& f) {
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 7) return;
    cpuid(1, 0, r);
    const bool osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1;
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = xgetbv0();
    // Bits 1-2: SSE and AVX (ymm) state; 5-7: opmask and zmm state.
    const bool os_ymm = (xcr0 & 0x6) == 0x6;
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;
    cpuid(7, 0, r);
    const unsigned b = r[1];
    const bool avx2 = (b >> 5) & 1;
    const bool f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    f.avx2_fma = os_ymm && avx2 && fma;
    f.avx512_f_bw_dq_vl = f.avx2_fma && os_zmm && f512 && dq && bw && vl;
    const bool vnni512 = (r[2] >> 11) & 1;
    const bool amx_bf16 = (r[3] >> 22) & 1, amx_tile = (r[3] >> 24) & 1, amx_int8 = (r[3] >> 25) & 1;
    cpuid(7, 1, r);
    const bool avx_vnni = (r[0] >> 4) & 1, bf16 = (r[0] >> 5) & 1;
    f.avx2_vnni = f.avx2_fma && avx_vnni;
    f.avx512_vnni = f.avx512_f_bw_dq_vl && vnni512;
    f.avx512_bf16 = f.avx512_vnni && bf16;
    // Bits 17-18: tile configuration and tile data state.
    const bool os_tiles = (xcr0 & 0x60000) == 0x60000;
    f.amx = f.avx512_bf16 && amx_tile && amx_bf16 && amx_int8 && os_tiles && amx_permitted();
}
#endif

}  // namespace

CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#if defined(RNNKIT_X86)
    detect_x86(f);
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
    // AdvSIMD is mandatory on aarch64.
    f.advsimd = true;
#endif
    return f;
}

}  // namespace rnnkit
