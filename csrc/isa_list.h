// The one list of instruction sets (ISAs) rnnkit has kernels for. The
// dispatcher's enum, names, declarations and registry (dispatch.*), the
// build (CMakeLists.txt reads the rows below) and tools/neon_qemu/run.sh
// are all driven by it.
//
// One row per ISA:  X(name, NAME, cpu, arch, "gcc/clang flags", "msvc flags")
//   name   the ISA's namespace rnnkit::<name>, its name for RNNKIT_ISA and
//          set_isa, and the suffix of its two headers: simd/vec_<name>.h
//          (the vector vocabulary) and kernels/config_<name>.h (its block
//          sizes); both are written in namespace RNNKIT_NS, so an ISA that
//          extends another may include the other's and add to it.
//   NAME   the build defines RNNKIT_HAVE_<NAME> to 1 where it compiled this
//          ISA's kernels, to 0 elsewhere.
//   cpu    the CpuFeatures field (cpu_features.h) that says this CPU and OS
//          can run it.
//   arch   the target architectures whose builds compile it: any, x86 or
//          arm64 (CMakeLists.txt maps them to CMAKE_SYSTEM_PROCESSOR).
//   flags  the compiler flags of its kernel objects (nothing else gets them).
// Rows go weakest first within an architecture: available_isas() keeps this
// order and the last available ISA is the default.
//
// Adding an ISA (say avx512_bf16, after avx512):
//   1. its row here (CMake parses the rows: keep one per line, this format);
//   2. csrc/simd/vec_<name>.h and csrc/kernels/config_<name>.h (the kernel
//      sources in csrc/kernels/ are compiled for it as they are);
//   3. if its cpu field is new, that field in CpuFeatures and its cpuid (or
//      other) test in detect_cpu_features() (cpu_features.cpp);
//   4. its name in the docstring of rnnkit.set_isa (python/rnnkit), which
//      lists them for users. Its kernel table, RNNKIT_ISA name, the tests'
//      parametrization and the isolation check follow from the list.
#pragma once

// clang-format off
#define RNNKIT_ISA_LIST(X) \
    X(scalar, SCALAR, baseline, any, "", "") \
    X(avx2, AVX2, avx2_fma, x86, "-mavx2 -mfma", "/arch:AVX2") \
    X(avx2_vnni, AVX2_VNNI, avx2_vnni, x86, "-mavx2 -mfma -mavxvnni", "/arch:AVX2") \
    X(avx512, AVX512, avx512_f_bw_dq_vl, x86, "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma", "/arch:AVX512") \
    X(avx512_vnni, AVX512_VNNI, avx512_vnni, x86, "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mavx512vnni", "/arch:AVX512") \
    X(avx512_bf16, AVX512_BF16, avx512_bf16, x86, "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mavx512vnni -mavx512bf16", "/arch:AVX512") \
    X(amx, AMX, amx, x86, "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mavx512vnni -mavx512bf16 -mamx-tile -mamx-bf16 -mamx-int8", "/arch:AVX512") \
    X(neon, NEON, advsimd, arm64, "", "")
// clang-format on
