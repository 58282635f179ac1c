// A small persistent worker pool for splitting the encryption of one large request across cores.
#pragma once

#include <cstddef>
#include <functional>

namespace veil {

// Runs fn(begin, end) over [0, n) in up to `hardware threads` contiguous chunks, the calling thread taking one.
// Runs inline when n < min_parallel. Rethrows the first exception a chunk threw.
void parallel_for(size_t n, size_t min_parallel, const std::function<void(size_t, size_t)>& fn);

}  // namespace veil
