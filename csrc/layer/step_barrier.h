// A barrier for the time loop that lets a thread which arrives early do
// independent work (the next chunk's input projection) instead of spinning.
// Threads leave as soon as everyone has arrived and their current piece of
// work is done; a late leaver is simply the early one at the next step.
#pragma once
#include <atomic>
#include <thread>

namespace rnnkit {

class StepBarrier {
public:
    explicit StepBarrier(int nthreads) : nthreads_(nthreads) {}

    // Waits for all `nthreads` threads; meanwhile calls take_work() (returns
    // false when it found nothing to do). Every write a thread made before
    // arriving is visible to every thread after it leaves.
    template <typename TakeWork>
    void arrive_and_wait(TakeWork&& take_work) {
        const unsigned gen = generation_.load(std::memory_order_acquire);
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) == nthreads_ - 1) {
            arrived_.store(0, std::memory_order_relaxed);
            generation_.store(gen + 1, std::memory_order_release);
            return;
        }
        // Spin while there is nothing to do, yielding now and then: with
        // more threads than cores a pure spin would starve the late thread.
        int idle = 0;
        while (generation_.load(std::memory_order_acquire) == gen) {
            if (take_work()) {
                idle = 0;
            } else if (++idle > kSpinsBeforeYield) {
                std::this_thread::yield();
                idle = 0;
            }
        }
    }

private:
    static constexpr int kSpinsBeforeYield = 4096;
    const int nthreads_;
    std::atomic<int> arrived_{0};
    std::atomic<unsigned> generation_{0};
};

// Pieces of work numbered 0, 1, 2, ... handed out in order to whichever
// thread asks, up to a limit the callers raise as more pieces may start
// (the pieces of chunk c + 1 only while chunk c runs).
class WorkQueue {
public:
    // Runs piece i with run(i) if the next one is below `limit`; false if not.
    template <typename Run>
    bool run_one(int limit, Run&& run) {
        int i = next_.load(std::memory_order_relaxed);
        do {
            if (i >= limit) return false;
        } while (!next_.compare_exchange_weak(i, i + 1, std::memory_order_relaxed));
        run(i);
        done_.fetch_add(1, std::memory_order_release);
        return true;
    }
    // Runs pieces below `limit` until none is left, then waits until every
    // one of them is finished, whoever took it (its results visible here).
    template <typename Run>
    void finish(int limit, Run&& run) {
        while (run_one(limit, run)) {
        }
        int idle = 0;
        while (done_.load(std::memory_order_acquire) < limit)
            if (++idle > kSpinsBeforeYield) {
                std::this_thread::yield();
                idle = 0;
            }
    }

private:
    static constexpr int kSpinsBeforeYield = 4096;
    std::atomic<int> next_{0};
    std::atomic<int> done_{0};
};

}  // namespace rnnkit
