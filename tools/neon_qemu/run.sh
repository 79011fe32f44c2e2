#!/usr/bin/env bash
# Builds the NEON and scalar kernels, the drivers and check.cpp for aarch64
# and runs the result under qemu-user (Debian: g++-aarch64-linux-gnu,
# qemu-user). For x86 development machines; CI does not run it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cxx="aarch64-linux-gnu-g++ -std=c++17 -O2 -Wall -Wextra -I$root/csrc"
objs=()
for isa in scalar neon; do
  for src in "$root"/csrc/kernels/*.cpp; do
    obj="$out/${isa}_$(basename "$src" .cpp).o"
    $cxx -DRNNKIT_TARGET_${isa^^}=1 -ffp-contract=off -c "$src" -o "$obj"
    objs+=("$obj")
  done
done
$cxx -DRNNKIT_HAVE_SCALAR=1 -DRNNKIT_HAVE_NEON=1 -static "$root/tools/neon_qemu/check.cpp" \
  "$root/csrc/dispatch.cpp" "$root"/csrc/layer/*.cpp "${objs[@]}" -o "$out/check"
qemu-aarch64 "$out/check"
