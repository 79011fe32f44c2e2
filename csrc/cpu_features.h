// What the CPU and the OS running this process support, as far as the
// kernels of isa_list.h need to know. Built with baseline flags.
#pragma once

namespace rnnkit {

struct CpuFeatures {
    bool baseline = true;            // everything the build's target architecture guarantees
    bool avx2_fma = false;           // x86: AVX2 and FMA, ymm state saved by the OS
    bool avx512_f_bw_dq_vl = false;  // x86: AVX-512 F, BW, DQ, VL, zmm and opmask state saved
    bool advsimd = false;            // aarch64: NEON, part of the architecture
};

// Runs cpuid (and XGETBV) on x86; nothing on other architectures.
CpuFeatures detect_cpu_features();

}  // namespace rnnkit
