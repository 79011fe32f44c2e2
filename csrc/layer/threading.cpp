#include "layer/threading.h"

#include <atomic>

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

}  // namespace rnnkit
