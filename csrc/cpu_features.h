// What the CPU and the OS running this process support, as far as the
// kernels of isa_list.h need to know. Built with baseline flags.
#pragma once

namespace rnnkit {

struct CpuFeatures {
    bool baseline = true;            // everything the build's target architecture guarantees
    bool avx2_fma = false;           // x86: AVX2 and FMA, ymm state saved by the OS
    bool avx512_f_bw_dq_vl = false;  // x86: AVX-512 F, BW, DQ, VL, zmm and opmask state saved
    bool avx2_vnni = false;          // x86: avx2_fma and AVX-VNNI (vpdpbusd on ymm, VEX)
    bool avx512_vnni = false;        // x86: avx512_f_bw_dq_vl and AVX512_VNNI
    bool avx512_bf16 = false;        // x86: avx512_vnni and AVX512_BF16
    bool amx = false;                // x86: avx512_bf16, AMX-TILE/BF16/INT8, tile state granted by the OS
    bool advsimd = false;            // aarch64: NEON, part of the architecture
};

// Runs cpuid (and XGETBV) on x86; nothing on other architectures.
CpuFeatures detect_cpu_features();

}  // namespace rnnkit
