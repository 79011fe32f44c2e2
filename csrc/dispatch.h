// Run-time ISA selection: which kernel sets this build has, which of them the
// CPU (and OS) can run, and which one new packs use.
#pragma once
#include <string>
#include <vector>

#include "isa_list.h"
#include "kernels/kernel_table.h"

namespace rnnkit {

// The ISAs of isa_list.h, in its order (weakest first).
#define RNNKIT_ISA_ENUMERATOR(name, NAME, cpu, arch, gnu_flags, msvc_flags) name,
enum class Isa { RNNKIT_ISA_LIST(RNNKIT_ISA_ENUMERATOR) };
#undef RNNKIT_ISA_ENUMERATOR
#define RNNKIT_ISA_PLUS_ONE(name, NAME, cpu, arch, gnu_flags, msvc_flags) +1
constexpr int kIsaCount = 0 RNNKIT_ISA_LIST(RNNKIT_ISA_PLUS_ONE);
#undef RNNKIT_ISA_PLUS_ONE

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name.
Isa isa_from_name(const std::string& name);
// ISAs compiled into this build and supported by this CPU, weakest first.
std::vector<Isa> available_isas();
bool isa_available(Isa isa);
// Kernels of an available ISA; throws std::runtime_error otherwise.
const KernelSet& kernels_for(Isa isa);

// The ISA used by packs made from now on: the best available one unless
// set_active_isa chose another (RNNKIT_ISA is applied by the Python layer).
Isa active_isa();
void set_active_isa(Isa isa);   // throws std::runtime_error if unavailable

template <typename T> const Kernels<T>& kernels_of(const KernelSet& s);
template <> inline const Kernels<float>& kernels_of<float>(const KernelSet& s) { return s.f32; }
template <> inline const Kernels<double>& kernels_of<double>(const KernelSet& s) { return s.f64; }

}  // namespace rnnkit
