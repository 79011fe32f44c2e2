#include "layer/threading.h"

#include <atomic>

#if defined(__linux__)
#include <sched.h>
#endif

namespace rnnkit {

namespace {
// 0 = not set: follow OpenMP's default.
std::atomic<int> g_num_threads{0};
}  // namespace

int get_num_threads() {
    const int n = g_num_threads.load();
    if (n > 0) return n;
#if defined(RNNKIT_HAVE_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void set_num_threads(int n) { g_num_threads.store(n); }

int current_cpu() {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
}

void leave_shared_cpu(int tid, const int* cpus) {
#if defined(__linux__)
    const int cpu = cpus[tid];
    if (cpu < 0 || cpu >= CPU_SETSIZE) return;
    bool shared = false;
    for (int j = 0; j < tid && !shared; ++j) shared = cpus[j] == cpu;
    if (!shared) return;
    // Narrowing the mask moves the thread at once; restoring it does not
    // move it back. A thread allowed on this CPU only stays.
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || !CPU_ISSET(cpu, &allowed)) return;
    cpu_set_t others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0) return;
    if (sched_setaffinity(0, sizeof(others), &others) == 0) sched_setaffinity(0, sizeof(allowed), &allowed);
#else
    (void)tid;
    (void)cpus;
#endif
}

}  // namespace rnnkit
