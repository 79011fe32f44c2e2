// A 64-bit fingerprint of a block of memory, to notice that a caller changed
// an array it was to keep as it was (the input a training context refers
// to instead of copying it).
#pragma once
#include <cstddef>
#include <cstdint>

namespace rnnkit {

// Any one changed 64-bit word (or tail byte) changes the result for certain;
// several changed words leave it equal with odds of about 2^-64.
std::uint64_t fingerprint(const void* data, std::size_t bytes);

}  // namespace rnnkit
