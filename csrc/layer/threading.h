// Thread-count policy and a thin veneer over OpenMP, so drivers read the
// same with or without it (without OpenMP every region runs on one thread).
#pragma once
#if defined(RNNKIT_HAVE_OPENMP)
#include <omp.h>
#endif

namespace rnnkit {

// Threads kernels may use: set_num_threads() if called, else OpenMP's
// default (which honours OMP_NUM_THREADS), else 1.
int get_num_threads();
void set_num_threads(int n);   // n >= 1; validated by the caller

// Runs body(tid, nthreads) on `nthreads` threads and waits for all of them.
template <typename Body>
void parallel_region(int nthreads, Body&& body) {
#if defined(RNNKIT_HAVE_OPENMP)
    if (nthreads > 1) {
#pragma omp parallel num_threads(nthreads)
        body(omp_get_thread_num(), omp_get_num_threads());
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
