#!/usr/bin/env bash
# Builds the NEON and scalar kernels, the drivers and check.cpp for aarch64
# and runs the result under qemu-user (Debian: g++-aarch64-linux-gnu,
# qemu-user). For x86 development machines; CI does not run it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cxx="aarch64-linux-gnu-g++ -std=c++17 -O2 -Wall -Wextra -I$root/csrc"
# The ISAs of csrc/isa_list.h (as CMake reads them): those for any
# architecture or arm64 are built, the others declared absent.
objs=()
have=()
while read -r isa upper arch; do
  if [ "$arch" != any ] && [ "$arch" != arm64 ]; then have+=("-DRNNKIT_HAVE_$upper=0"); continue; fi
  have+=("-DRNNKIT_HAVE_$upper=1")
  for src in "$root"/csrc/kernels/*.cpp; do
    obj="$out/${isa}_$(basename "$src" .cpp).o"
    $cxx -DRNNKIT_NS="$isa" -DRNNKIT_VEC_HEADER="\"simd/vec_$isa.h\"" \
      -DRNNKIT_CONFIG_HEADER="\"kernels/config_$isa.h\"" -ffp-contract=off -c "$src" -o "$obj"
    objs+=("$obj")
  done
done < <(sed -nE 's/^ *X\(([a-z0-9_]+), *([A-Z0-9_]+), *[a-z0-9_]+, *([a-z0-9]+),.*/\1 \2 \3/p' "$root/csrc/isa_list.h")
$cxx "${have[@]}" -static "$root/tools/neon_qemu/check.cpp" "$root/csrc/dispatch.cpp" \
  "$root/csrc/cpu_features.cpp" "$root"/csrc/layer/*.cpp "${objs[@]}" -o "$out/check"
qemu-aarch64 "$out/check"
