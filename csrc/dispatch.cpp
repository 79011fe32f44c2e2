// The table of kernel sets: one per ISA of isa_list.h that this build
// compiled and this CPU runs. Built with baseline flags: the per-ISA code is
// only reached through the tables, after detect_cpu_features() said yes.
#include "dispatch.h"

#include <atomic>
#include <stdexcept>

#include "cpu_features.h"

namespace rnnkit {

// Each ISA's kernel object defines its fill_kernel_set (kernels/table.cpp);
// the registry calls only those of the ISAs this build compiled.
#define RNNKIT_ISA_DECLARE_FILL(name, NAME, cpu, arch, gnu_flags, msvc_flags) \
    namespace name {                                                          \
    void fill_kernel_set(KernelSet&);                                         \
    }
RNNKIT_ISA_LIST(RNNKIT_ISA_DECLARE_FILL)
#undef RNNKIT_ISA_DECLARE_FILL

namespace {

struct Registry {
    KernelSet sets[kIsaCount];
    bool usable[kIsaCount] = {};
    std::atomic<int> active{0};

    Registry() {
        const CpuFeatures cpu = detect_cpu_features();
        // An ISA the build did not compile is a discarded statement: its
        // fill_kernel_set is never referenced.
#define RNNKIT_ISA_REGISTER(name, NAME, feature, arch, gnu_flags, msvc_flags) \
    if constexpr (RNNKIT_HAVE_##NAME) {                                       \
        if (cpu.feature) {                                                    \
            name::fill_kernel_set(sets[int(Isa::name)]);                      \
            usable[int(Isa::name)] = true;                                    \
        }                                                                     \
    }
        RNNKIT_ISA_LIST(RNNKIT_ISA_REGISTER)
#undef RNNKIT_ISA_REGISTER
        // The best one (the last in the list) is the default.
        for (int i = 0; i < kIsaCount; ++i)
            if (usable[i]) active.store(i);
    }
};

Registry& registry() {
    static Registry r;
    return r;
}

#define RNNKIT_ISA_NAME(name, NAME, cpu, arch, gnu_flags, msvc_flags) #name,
const char* const kNames[kIsaCount] = {RNNKIT_ISA_LIST(RNNKIT_ISA_NAME)};
#undef RNNKIT_ISA_NAME

std::string joined(const std::vector<Isa>& isas) {
    std::string s;
    for (Isa i : isas) s += (s.empty() ? "" : ", ") + std::string(kNames[int(i)]);
    return s;
}

std::vector<Isa> every_isa() {
    std::vector<Isa> out;
    for (int i = 0; i < kIsaCount; ++i) out.push_back(Isa(i));
    return out;
}

}  // namespace

const char* isa_name(Isa isa) { return kNames[int(isa)]; }

Isa isa_from_name(const std::string& name) {
    for (int i = 0; i < kIsaCount; ++i)
        if (name == kNames[i]) return Isa(i);
    throw std::invalid_argument("unknown ISA '" + name + "'; expected one of: " + joined(every_isa()));
}

std::vector<Isa> available_isas() {
    std::vector<Isa> out;
    for (Isa i : every_isa())
        if (registry().usable[int(i)]) out.push_back(i);
    return out;
}

bool isa_available(Isa isa) { return registry().usable[int(isa)]; }

const KernelSet& kernels_for(Isa isa) {
    if (!isa_available(isa))
        throw std::runtime_error(std::string("ISA '") + isa_name(isa) +
                                 "' is not available on this CPU/build; available: " + joined(available_isas()));
    return registry().sets[int(isa)];
}

Isa active_isa() { return Isa(registry().active.load()); }

void set_active_isa(Isa isa) {
    kernels_for(isa);  // validates
    registry().active.store(int(isa));
}

}  // namespace rnnkit
