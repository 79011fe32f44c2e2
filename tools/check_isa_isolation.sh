#!/usr/bin/env bash
# Builds the extension with CMake and checks, on x86-64, that
#  - no object outside the AVX2/AVX-512 kernel libraries (drivers, dispatch,
#    bindings, scalar kernels) contains an AVX/AVX-512 instruction, and
#  - the AVX2/AVX-512 kernel objects define no symbol outside their own
#    namespace (a shared inline function compiled with -mavx512f that the
#    linker picks for everyone is an illegal instruction on an AVX2 CPU).
# Needs cmake, ninja, objdump, nm and a Python with pybind11 installed.
# RNNKIT_EXTRA_CMAKE_ARGS is passed to cmake (e.g. to prove the check fails
# with -DCMAKE_CXX_FLAGS=-mavx2).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$python")" \
  ${RNNKIT_EXTRA_CMAKE_ARGS:-} > /dev/null
ninja -C "$build" > /dev/null
status=0
# ymm/zmm registers, mask registers and VEX-encoded FMAs.
wide='%[yz]mm[0-9]|%k[1-7]|vfn?m(add|sub)'
for obj in $(find "$build/CMakeFiles/_core.dir" "$build/CMakeFiles/rnnkit_kernels_scalar.dir" -name '*.o'); do
  hits=$(objdump -d --no-show-raw-insn "$obj" | grep -cE "$wide" || true)
  if [ "$hits" != 0 ]; then echo "FAIL: $hits wide instructions in baseline object ${obj#$build/}"; status=1; fi
done
for isa in avx2 avx512; do
  for obj in $(find "$build/CMakeFiles/rnnkit_kernels_$isa.dir" -name '*.o'); do
    leaks=$(nm -C --defined-only "$obj" | grep -E ' [TtWwVvu] ' | grep -v "rnnkit::$isa::" || true)
    if [ -n "$leaks" ]; then echo "FAIL: ${obj#$build/} defines symbols outside rnnkit::$isa::"; echo "$leaks"; status=1; fi
  done
done
[ "$status" = 0 ] && echo "ok: baseline objects are baseline-only; ISA objects keep to their namespaces"
exit "$status"
