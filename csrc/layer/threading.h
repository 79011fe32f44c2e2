// Thread-count policy and a thin veneer over OpenMP, so drivers read the
// same with or without it (without OpenMP every region runs on one thread).
#pragma once
#include <atomic>
#include <exception>
#include <mutex>
#if defined(RNNKIT_HAVE_OPENMP)
#include <omp.h>
#endif

namespace rnnkit {

// Most threads a team may have. Far above any core count rnnkit is tuned
// for, far below what makes thread creation fail (libgomp then ends the
// process instead of reporting an error).
constexpr int kMaxThreads = 1024;

// Threads kernels may use: set_num_threads() if called, else OpenMP's
// default (which honours OMP_NUM_THREADS) clamped to [1, kMaxThreads],
// else 1. Always 1 in a process forked from one that may have started
// threads (see single_threaded_after_fork).
int get_num_threads();
void set_num_threads(int n);   // 1 <= n <= kMaxThreads; validated by the caller

// True in a child made by fork(): GNU libgomp's thread pool is not
// fork-safe (the child inherits the parent's pool bookkeeping but none of
// its threads, and its first parallel region waits for them forever), so
// a forked child runs every region on its calling thread, as PyTorch does.
inline std::atomic<bool> g_forked_child{false};
inline bool single_threaded_after_fork() { return g_forked_child.load(std::memory_order_relaxed); }

// The CPU the calling thread runs on, or -1 where that is not known.
int current_cpu();

// Teams up to this size check that their threads run on different CPUs.
constexpr int kMaxSpreadThreads = 64;

// Thread tid of a team, cpus[i] the CPU of thread i: if a lower-numbered
// thread shares tid's CPU, tid moves to another CPU it may run on (its
// affinity mask is left as it was). In a virtual machine a pool thread
// that slept through a pause is often woken on the vCPU of the thread that
// wakes it, the other vCPU looking busy to the guest while halted, and the
// scheduler takes ~10 ms to part them: every step barrier of a time loop
// in that window waits for a thread that cannot run.
void leave_shared_cpu(int tid, const int* cpus);

// Time for a cache line to go from the first thread of a 2-thread team to
// the second and back (ns, the least of a few exchanges), measured at most
// every kRoundTripMaxAgeMs and reused in between. ~50 ns between cores
// that share an L3; several hundred between CCDs or sockets, and between
// vCPUs the host has placed far apart (on the VM the figures come from,
// 50 or 330 ns, changing from one second to the next). 0 without OpenMP
// or inside another parallel region (a team of one).
double core_round_trip_ns();
constexpr double kRoundTripMaxAgeMs = 20.0;

// The first exception thrown on any thread of a region, rethrown on the
// calling thread once the region is over: an exception may not leave an
// OpenMP region (that ends the process), and a failed allocation on a
// worker must reach Python as MemoryError. Bodies that wait on each other
// (barriers) must not throw after their first wait; they allocate first.
class RegionError {
public:
    void capture() noexcept {
        std::lock_guard<std::mutex> lock(mu_);
        if (!first_) first_ = std::current_exception();
    }
    void rethrow() {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::mutex mu_;
    std::exception_ptr first_;
};

// Runs body(tid, nthreads) on `nthreads` threads and waits for all of them.
template <typename Body>
void parallel_region(int nthreads, Body&& body) {
#if defined(RNNKIT_HAVE_OPENMP)
    if (nthreads > 1 && !single_threaded_after_fork()) {
        int cpus[kMaxSpreadThreads];
        RegionError error;
#pragma omp parallel num_threads(nthreads)
        {
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            if (nth <= kMaxSpreadThreads) {
                cpus[tid] = current_cpu();
#pragma omp barrier
                leave_shared_cpu(tid, cpus);
            }
            try {
                body(tid, nth);
            } catch (...) {
                error.capture();
            }
        }
        error.rethrow();
        return;
    }
#endif
    (void)nthreads;
    body(0, 1);
}

// All `nthreads` threads of the current parallel_region wait here. With one
// thread there is nothing to wait for, and an orphaned OpenMP barrier would
// bind to a caller's own OpenMP team instead.
inline void region_barrier(int nthreads) {
#if defined(RNNKIT_HAVE_OPENMP)
    if (nthreads > 1) {
#pragma omp barrier
    }
#endif
    (void)nthreads;
}

// Contiguous, balanced share [begin, end) of n items for thread tid.
inline void split_range(int n, int tid, int nthreads, int& begin, int& end) {
    const int base = n / nthreads, extra = n % nthreads;
    begin = tid * base + (tid < extra ? tid : extra);
    end = begin + base + (tid < extra ? 1 : 0);
}

}  // namespace rnnkit
