#include "layer/threading.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace rnnkit {

namespace {
// 0 = not set: follow OpenMP's default.
std::atomic<int> g_num_threads{0};

// Registered when the library is loaded: every fork() after that, from
// any thread (os.fork, multiprocessing, a C library), marks the child.
#if defined(__unix__) || defined(__APPLE__)
void mark_forked_child() { g_forked_child.store(true, std::memory_order_relaxed); }
[[maybe_unused]] const bool g_fork_handler_registered = pthread_atfork(nullptr, nullptr, mark_forked_child) == 0;
#endif
}  // namespace

int get_num_threads() {
    if (single_threaded_after_fork()) return 1;
    const int n = g_num_threads.load();
    if (n > 0) return n;
#if defined(RNNKIT_HAVE_OPENMP)
    // OMP_NUM_THREADS is the user's, not validated by anyone before here.
    return std::max(1, std::min(omp_get_max_threads(), kMaxThreads));
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

#if defined(RNNKIT_HAVE_OPENMP)
namespace {
using Clock = std::chrono::steady_clock;

// The last measurement and when it was taken (ns since the clock's epoch;
// 0: never).
std::atomic<double> g_round_trip_ns{0.0};
std::atomic<std::int64_t> g_round_trip_at{0};

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Ping-pong of one line between threads 0 and 1, once both run (1 writes 1;
// then 0 writes 2i + 2 and 1 answers 2i + 3), timed in batches (a clock
// read costs about as much as a round trip between close cores) whose
// best average is the result. Once both have started, either side gives
// up after kGiveUpNs (a thread the OS is not running: the two share a
// CPU), writing -1 so the other stops waiting too; the result is then
// infinite, which keeps short steps on one thread.
double measure_round_trip_ns() {
    constexpr int kBatches = 3, kExchanges = 8;
    constexpr std::int64_t kGiveUpNs = 200000;
    struct alignas(64) Line {
        std::atomic<int> v{0};
    } line;
    double best = std::numeric_limits<double>::infinity();
    bool team = true;
    parallel_region(2, [&](int tid, int nth) {
        if (nth < 2) team = false;
        if (nth < 2 || tid > 1) return;
        std::int64_t deadline = std::numeric_limits<std::int64_t>::max();
        auto wait_for = [&](int want) {
            for (int spins = 0;; ++spins) {
                const int v = line.v.load(std::memory_order_acquire);
                if (v == want) return true;
                if (v < 0 || ((spins & 255) == 255 && now_ns() > deadline)) {
                    line.v.store(-1, std::memory_order_release);
                    return false;
                }
                if ((spins & 4095) == 4095) std::this_thread::yield();
            }
        };
        if (tid == 1) {
            line.v.store(1, std::memory_order_release);
        } else if (!wait_for(1)) {
            return;
        }
        deadline = now_ns() + kGiveUpNs;
        for (int b = 0, i = 0; b < kBatches; ++b) {
            const std::int64_t t0 = tid == 0 ? now_ns() : 0;
            for (int e = 0; e < kExchanges; ++e, ++i) {
                if (tid == 0) {
                    line.v.store(2 * i + 2, std::memory_order_release);
                    if (!wait_for(2 * i + 3)) return;
                } else {
                    if (!wait_for(2 * i + 2)) return;
                    line.v.store(2 * i + 3, std::memory_order_release);
                }
            }
            if (tid == 0) best = std::min(best, double(now_ns() - t0) / kExchanges);
        }
    });
    // A team of one (nested inside another parallel region): no figure.
    return team ? best : -1.0;
}
}  // namespace
#endif

double core_round_trip_ns() {
#if defined(RNNKIT_HAVE_OPENMP)
    const std::int64_t at = g_round_trip_at.load(std::memory_order_relaxed);
    if (at != 0 && double(now_ns() - at) <= kRoundTripMaxAgeMs * 1e6)
        return g_round_trip_ns.load(std::memory_order_relaxed);
    const double rt = measure_round_trip_ns();
    if (rt < 0.0) return 0.0;
    g_round_trip_ns.store(rt, std::memory_order_relaxed);
    g_round_trip_at.store(now_ns(), std::memory_order_relaxed);
    return rt;
#else
    return 0.0;
#endif
}

}  // namespace rnnkit
