// Reuse of large freed blocks. A training step allocates the same large
// workspaces every call; fresh pages from the OS cost a fault and a zeroing
// each (about 10 ms per step for an LSTM at T=50, B=32, H=512), so freed
// blocks are kept for the next call of the same shape instead.
#pragma once
#include <cstddef>

namespace rnnkit {

// Blocks below this size come and go through malloc, which reuses them
// from its own free lists anyway.
constexpr std::size_t kCachedBlockMin = std::size_t(256) << 10;

// Returns a malloc'ed block of at least `bytes` (its true size in *got).
// Throws std::bad_alloc when memory is exhausted.
void* block_acquire(std::size_t bytes, std::size_t* got);

// Takes back a block from block_acquire; keeps it for reuse within the
// cache's limits, frees it otherwise.
void block_release(void* block, std::size_t bytes);

// Frees every kept block; returns the bytes freed.
std::size_t block_cache_clear();

// Around fork(): the forking thread takes the cache's lock, so no other
// thread holds it at the fork, and both sides release it after (called by
// the fork handlers in packed_weights.cpp, which fix the lock order).
void block_cache_fork_prepare();
void block_cache_fork_done();

// Bytes currently kept for reuse.
std::size_t block_cache_bytes();

}  // namespace rnnkit
