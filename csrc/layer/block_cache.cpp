#include "layer/block_cache.h"

#include <array>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace rnnkit {

namespace {

// At most this many blocks and bytes are kept: enough for every buffer of
// one training step of a large layer, little enough that an idle process
// does not hold much beyond what its last call needed.
constexpr std::size_t kMaxBlocks = 16;
constexpr std::size_t kMaxBytes = std::size_t(512) << 20;

struct Block {
    void* ptr;
    std::size_t bytes;
};

struct Cache {
    // Room for one more than kept: block_release runs in destructors
    // (noexcept) and must not allocate.
    Cache() { blocks.reserve(kMaxBlocks + 1); }
    std::mutex mu;
    std::vector<Block> blocks;   // oldest first
    std::size_t bytes = 0;
};

Cache& cache() {
    // Never destroyed: buffers released during static destruction must
    // still find it.
    static Cache* c = new Cache();
    return *c;
}


// A block of several MiB (packed weights a step streams from L3, the
// training workspaces) would take a TLB entry per 4 KiB page; with
// transparent huge pages in their usual "madvise" mode only a range marked
// so gets 2 MiB pages (GRU T=187, B=1, H=1536 on one thread: 142 -> 119
// ms). Only whole huge pages inside the block are marked, so its tail does
// not grow the resident size beyond what the block holds.
void* allocate(std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    constexpr std::size_t kHugePage = std::size_t(2) << 20;
    if (bytes >= kHugePage) {
        void* p = nullptr;
        if (posix_memalign(&p, kHugePage, bytes) != 0) return nullptr;
        // Advice only: where it is refused the block keeps small pages.
        (void)madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
        return p;
    }
#endif
    return std::malloc(bytes);
}

}  // namespace

void* block_acquire(std::size_t bytes, std::size_t* got) {
    if (bytes >= kCachedBlockMin) {
        Cache& c = cache();
        std::lock_guard<std::mutex> lock(c.mu);
        // Smallest kept block that fits without wasting more than half of it.
        std::size_t best = c.blocks.size();
        for (std::size_t i = 0; i < c.blocks.size(); ++i) {
            const std::size_t b = c.blocks[i].bytes;
            if (b >= bytes && b / 2 <= bytes && (best == c.blocks.size() || b < c.blocks[best].bytes)) best = i;
        }
        if (best != c.blocks.size()) {
            Block blk = c.blocks[best];
            c.blocks.erase(c.blocks.begin() + std::ptrdiff_t(best));
            c.bytes -= blk.bytes;
            *got = blk.bytes;
            return blk.ptr;
        }
    }
    void* p = allocate(bytes);
    // Kept blocks that did not fit may be what stands in the way.
    if (!p && block_cache_clear() > 0) p = allocate(bytes);
    if (!p) throw std::bad_alloc();
    *got = bytes;
    return p;
}

void block_release(void* block, std::size_t bytes) {
    if (!block) return;
    if (bytes >= kCachedBlockMin && bytes <= kMaxBytes) {
        Cache& c = cache();
        // Fixed storage: at most every kept block plus this one is evicted.
        std::array<void*, kMaxBlocks + 1> evicted;
        std::size_t drop = 0;
        {
            std::lock_guard<std::mutex> lock(c.mu);
            c.blocks.push_back({block, bytes});   // within the reserved capacity
            c.bytes += bytes;
            // Oldest blocks go first when over either limit.
            while (drop < c.blocks.size() && (c.blocks.size() - drop > kMaxBlocks || c.bytes > kMaxBytes)) {
                c.bytes -= c.blocks[drop].bytes;
                evicted[drop] = c.blocks[drop].ptr;
                ++drop;
            }
            c.blocks.erase(c.blocks.begin(), c.blocks.begin() + std::ptrdiff_t(drop));
        }
        for (std::size_t i = 0; i < drop; ++i) std::free(evicted[i]);
        return;
    }
    std::free(block);
}

std::size_t block_cache_clear() {
    Cache& c = cache();
    // Copied out, not swapped: the vector keeps its reserved capacity.
    std::array<Block, kMaxBlocks + 1> taken;
    std::size_t count = 0;
    {
        std::lock_guard<std::mutex> lock(c.mu);
        for (const Block& b : c.blocks) taken[count++] = b;
        c.blocks.clear();
        c.bytes = 0;
    }
    std::size_t freed = 0;
    for (std::size_t i = 0; i < count; ++i) {
        freed += taken[i].bytes;
        std::free(taken[i].ptr);
    }
    return freed;
}

void block_cache_fork_prepare() { cache().mu.lock(); }
void block_cache_fork_done() { cache().mu.unlock(); }

std::size_t block_cache_bytes() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    return c.bytes;
}

}  // namespace rnnkit
