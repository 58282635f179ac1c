// A small persistent worker pool for splitting the encryption of one large request across cores.
#pragma once

#include <cstddef>
#include <functional>

namespace veil {

// Runs fn(begin, end) over [0, n) in contiguous chunks (about four per hardware thread, at least min_parallel / 2
// items each) that the calling thread and the pool's workers take in turn, so a worker that starts late takes
// fewer. Runs inline when n < min_parallel. After a chunk throws, no new chunk starts; the first exception is
// rethrown once every started chunk has finished.
void parallel_for(size_t n, size_t min_parallel, const std::function<void(size_t, size_t)>& fn);

}  // namespace veil
