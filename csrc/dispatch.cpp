// CPU feature detection (cpuid + XGETBV) and the table of kernel sets. Built
// with baseline flags: nothing here executes an instruction the CPU may lack.
#include "dispatch.h"

#include <atomic>
#include <stdexcept>

#if defined(_MSC_VER)
#include <intrin.h>
#endif
#if (defined(__x86_64__) || defined(__i386__)) && !defined(_MSC_VER)
#include <cpuid.h>
#endif

namespace rnnkit {

#if defined(RNNKIT_HAVE_SCALAR)
namespace scalar { void fill_kernel_set(KernelSet&); }
#endif
#if defined(RNNKIT_HAVE_AVX2)
namespace avx2 { void fill_kernel_set(KernelSet&); }
#endif
#if defined(RNNKIT_HAVE_AVX512)
namespace avx512 { void fill_kernel_set(KernelSet&); }
#endif
#if defined(RNNKIT_HAVE_NEON)
namespace neon { void fill_kernel_set(KernelSet&); }
#endif

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

struct X86Features { bool avx2 = false, avx512 = false; };

X86Features detect_x86() {
    X86Features f;
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 7) return f;
    cpuid(1, 0, r);
    const bool osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1;
    if (!osxsave || !avx) return f;
    const unsigned long long xcr0 = xgetbv0();
    // Bits 1-2: SSE and AVX (ymm) state; 5-7: opmask and zmm state.
    const bool os_ymm = (xcr0 & 0x6) == 0x6;
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;
    cpuid(7, 0, r);
    const unsigned b = r[1];
    const bool avx2 = (b >> 5) & 1;
    const bool f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    f.avx2 = os_ymm && avx2 && fma;
    f.avx512 = f.avx2 && os_zmm && f512 && dq && bw && vl;
    return f;
}
#endif

struct Registry {
    KernelSet sets[kIsaCount];
    bool usable[kIsaCount] = {false, false, false, false};
    std::atomic<int> active{0};

    Registry() {
#if defined(RNNKIT_HAVE_SCALAR)
        scalar::fill_kernel_set(sets[int(Isa::scalar)]);
        usable[int(Isa::scalar)] = true;
#endif
#if defined(RNNKIT_X86)
        const X86Features f = detect_x86();
#if defined(RNNKIT_HAVE_AVX2)
        if (f.avx2) { avx2::fill_kernel_set(sets[int(Isa::avx2)]); usable[int(Isa::avx2)] = true; }
#endif
#if defined(RNNKIT_HAVE_AVX512)
        if (f.avx512) { avx512::fill_kernel_set(sets[int(Isa::avx512)]); usable[int(Isa::avx512)] = true; }
#endif
#endif
#if defined(RNNKIT_HAVE_NEON)
        // AdvSIMD is mandatory on aarch64, the only target that builds it.
        neon::fill_kernel_set(sets[int(Isa::neon)]);
        usable[int(Isa::neon)] = true;
#endif
        for (int i = 0; i < kIsaCount; ++i)
            if (usable[i]) active.store(i);
    }
};

Registry& registry() {
    static Registry r;
    return r;
}

const char* const kNames[kIsaCount] = {"scalar", "avx2", "avx512", "neon"};

}  // namespace

const char* isa_name(Isa isa) { return kNames[int(isa)]; }

Isa isa_from_name(const std::string& name) {
    for (int i = 0; i < kIsaCount; ++i)
        if (name == kNames[i]) return Isa(i);
    throw std::invalid_argument("unknown ISA '" + name + "'; expected one of: scalar, avx2, avx512, neon");
}

std::vector<Isa> available_isas() {
    std::vector<Isa> out;
    // scalar first, then x86 in increasing width, then neon.
    for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon})
        if (registry().usable[int(i)]) out.push_back(i);
    return out;
}

bool isa_available(Isa isa) { return registry().usable[int(isa)]; }

static std::string available_list() {
    std::string s;
    for (Isa i : available_isas()) s += (s.empty() ? "" : ", ") + std::string(isa_name(i));
    return s;
}

const KernelSet& kernels_for(Isa isa) {
    if (!isa_available(isa))
        throw std::runtime_error(std::string("ISA '") + isa_name(isa) +
                                 "' is not available on this CPU/build; available: " + available_list());
    return registry().sets[int(isa)];
}

Isa active_isa() { return Isa(registry().active.load()); }

void set_active_isa(Isa isa) {
    kernels_for(isa);  // validates
    registry().active.store(int(isa));
}

}  // namespace rnnkit
