#!/usr/bin/env bash
# Checks, on x86-64, that
#  - no object outside the SIMD kernel libraries (drivers, dispatch,
#    bindings, and the kernels of ISAs built with baseline flags, such as
#    scalar) contains an AVX/AVX-512 instruction,
#  - no SIMD kernel object contains instructions of an extension its own
#    flags lack (zmm in AVX2 objects, VNNI, BF16 or AMX elsewhere), and
#  - the SIMD kernel objects define no symbol outside their own namespace
#    (a shared inline function compiled with -mavx512f that the linker picks
#    for everyone is an illegal instruction on an AVX2 CPU).
# The ISAs and their flags come from csrc/isa_list.h.
#
# Usage: check_isa_isolation.sh [BUILD_DIR]
#   With BUILD_DIR (a CMake build of this tree, e.g. the dev loop's build/),
#   checks its objects. Without, configures and builds the extension in a
#   temporary directory first: needs cmake, ninja and a Python ($PYTHON, else
#   python3) with pybind11 installed. RNNKIT_EXTRA_CMAKE_ARGS is passed to
#   cmake (e.g. to prove the check fails with -DCMAKE_CXX_FLAGS=-mavx2).
# Needs objdump and nm. (The installed wheel's extension is stripped: its
# functions cannot be told apart, hence a build of its own.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$(uname -m)" in
  x86_64|amd64|AMD64) ;;
  *) echo "skipped: the check reads x86 disassembly"; exit 0 ;;
esac
if [ $# -ge 1 ]; then
  build="$(cd "$1" && pwd)"
else
  python="${PYTHON:-python3}"
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$python")" \
    ${RNNKIT_EXTRA_CMAKE_ARGS:-} > /dev/null
  cmake --build "$build" > /dev/null
fi
[ -d "$build/CMakeFiles/_core.dir" ] || { echo "FAIL: $build is not a build of the extension"; exit 1; }
# The rows of isa_list.h: name and GCC/Clang flags (empty: baseline code).
baseline_dirs=("$build/CMakeFiles/_core.dir")
simd_isas=()
while IFS='|' read -r isa flags; do
  dir="$build/CMakeFiles/rnnkit_kernels_$isa.dir"
  [ -d "$dir" ] || continue
  if [ -z "$flags" ]; then baseline_dirs+=("$dir"); else simd_isas+=("$isa"); fi
done < <(sed -nE 's/^ *X\(([a-z0-9_]+), *[A-Z0-9_]+, *[a-z0-9_]+, *[a-z0-9]+, *"([^"]*)".*/\1|\2/p' "$root/csrc/isa_list.h")
[ "${#simd_isas[@]}" -gt 0 ] || { echo "FAIL: no SIMD kernel objects in $build"; exit 1; }
status=0
# ymm/zmm registers, mask registers and VEX-encoded FMAs.
wide='%[yz]mm[0-9]|%k[1-7]|vfn?m(add|sub)'
count=0
for obj in $(find "${baseline_dirs[@]}" -name '*.o'); do
  count=$((count + 1))
  hits=$(objdump -d --no-show-raw-insn "$obj" | grep -cE "$wide" || true)
  if [ "$hits" != 0 ]; then echo "FAIL: $hits wide instructions in baseline object ${obj#$build/}"; status=1; fi
done
# Instructions of an extension an ISA's flags do not enable must not appear
# in its objects either (an AVX2 object with a zmm register, an AVX-512 one
# with vpdpbusd, anything but AMX objects with tile instructions).
declare -A isa_flags
while IFS='|' read -r isa flags; do isa_flags[$isa]="$flags"; done \
  < <(sed -nE 's/^ *X\(([a-z0-9_]+), *[A-Z0-9_]+, *[a-z0-9_]+, *[a-z0-9]+, *"([^"]*)".*/\1|\2/p' "$root/csrc/isa_list.h")
foreign_of() {
  local flags=" $1 " re=()
  [[ $flags == *" -mavx512f "* ]] || re+=('%zmm[0-9]' '%k[1-7]')
  [[ $flags == *" -mavxvnni "* || $flags == *" -mavx512vnni "* ]] || re+=('vpdpbus' 'vpdpwss')
  [[ $flags == *" -mavx512bf16 "* ]] || re+=('vdpbf16ps' 'vcvtne2?ps2bf16')
  [[ $flags == *" -mamx-tile "* ]] || re+=('ldtilecfg' 'tileloadd' 'tilestored' 'tilezero' 'tilerelease' 'tdp(bf16ps|bu?s?u?d)')
  local IFS='|'; echo "${re[*]}"
}
for isa in "${simd_isas[@]}"; do
  foreign=$(foreign_of "${isa_flags[$isa]}")
  for obj in $(find "$build/CMakeFiles/rnnkit_kernels_$isa.dir" -name '*.o'); do
    count=$((count + 1))
    if [ -n "$foreign" ]; then
      hits=$(objdump -d --no-show-raw-insn "$obj" | grep -cE "$foreign" || true)
      if [ "$hits" != 0 ]; then echo "FAIL: $hits instructions beyond $isa's flags in ${obj#$build/}"; status=1; fi
    fi
    leaks=$(nm -C --defined-only "$obj" | grep -E ' [TtWwVvu] ' | grep -v "rnnkit::$isa::" || true)
    if [ -n "$leaks" ]; then echo "FAIL: ${obj#$build/} defines symbols outside rnnkit::$isa::"; echo "$leaks"; status=1; fi
  done
done
[ "$status" = 0 ] && echo "ok: $count objects; baseline objects are baseline-only; ${simd_isas[*]} objects keep to their namespaces and their flags' instructions"
exit "$status"
