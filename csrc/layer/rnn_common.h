// Helpers shared by the forward and backward drivers.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>

#include "layer/packed_weights.h"
#include "layer/threading.h"

namespace rnnkit {

// Threads for the time loop. Each step ends in a barrier, and each thread
// then reads the units of h the others wrote: with n threads a step takes
// about work / n plus kStepSyncRoundTrips core-to-core round trips
// (measured on the VM the figures come from, 2 threads, LSTM/GRU
// 1000x8x32x64: 7-10 of them per step, 50 ns each when the host put its
// two vCPUs close, 330 ns when far apart). Steps with little recurrent
// work run on one thread; short ones on one thread too where the cores
// are far apart (measured then, LSTM 1000x8x32x64: 2 threads 5.7 ms, 1
// thread 4.9). Threads split blocks of hidden units only (the batch is not
// split yet), so there is no point in more threads than blocks.
constexpr double kStepSyncRoundTrips = 8.0;
// One core's rough pace, for the estimate of a step's work: products at
// ~100 GFLOP/s, gate math ~1 ns per unit and row.
constexpr double kCoreFlopsPerNs = 100.0;
constexpr double kGateNsPerUnit = 1.0;
// Calls with less work than this keep their threads unmeasured: the
// measurement (a parallel region and 8 round trips) would be a real
// share of them.
constexpr double kMeasureMinCallNs = 5e5;
// Round trips are not expected above this (across sockets ~500 ns): steps
// that would gain more than kStepSyncRoundTrips of them are not measured.
constexpr double kFarRoundTripNs = 1000.0;

// Threads of a call: `loop` for its time loop, `other` for the rest of its
// parallel work (input projections, weight gradients).
struct ThreadPlan {
    int loop, other;
};

// Where short steps run on one thread because the cores are far apart, the
// whole call does: the loop's thread would otherwise read the projections
// another core wrote, a line at a time across the same distance.
template <typename T>
ThreadPlan thread_plan(const PackedRnn<T>& w, int batch, int steps, int nthreads) {
    const double step_flops = 2.0 * batch * w.G * double(w.H) * w.H;
    if (step_flops < 1.5e5) return {1, nthreads};
    const int n = std::max(1, std::min(nthreads, w.layout.blocks()));
    if (n == 1) return {1, nthreads};
    // Work per step on one core: recurrent and input products, gate math.
    const double work_ns = (step_flops + 2.0 * batch * w.G * double(w.H) * w.I) / kCoreFlopsPerNs +
                           kGateNsPerUnit * batch * w.H;
    // n threads pay off while work (1 - 1 / n) exceeds the sync cost;
    // only steps short enough for a far-apart pair to matter are measured.
    const double gain_ns = work_ns * (1.0 - 1.0 / n);
    if (gain_ns > kStepSyncRoundTrips * kFarRoundTripNs || work_ns * steps < kMeasureMinCallNs) return {n, nthreads};
    if (gain_ns > kStepSyncRoundTrips * core_round_trip_ns()) return {n, nthreads};
    return {1, 1};
}

// The k-th item of a run [begin, end) walked forwards or backwards. Time
// loops walk their blocks of recurrent weights backwards on odd steps, so a
// step starts with the panels the step before read last, still in L2: with
// recurrent weights about an L2's size, walking them always the same way
// misses on nearly every panel of every step.
inline int walked(int k, int begin, int end, bool backwards) { return backwards ? begin + end - 1 - k : k; }

template <typename T>
void copy_or_zero(T* dst, const T* src, std::size_t n) {
    if (src) std::memcpy(dst, src, n * sizeof(T));
    else std::memset(dst, 0, n * sizeof(T));
}

// A caller may let h_n alias y's last step (a single-step call does).
template <typename T>
void copy_unless_same(T* dst, const T* src, std::size_t n) {
    if (dst != src) std::memcpy(dst, src, n * sizeof(T));
}

}  // namespace rnnkit
