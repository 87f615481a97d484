// The CPU allocator of the addon's tensors: large blocks come from a cache of
// mappings of their own, small ones from glibc as before (see host_allocator.cpp).
//
// Pure c10 (no torch/torch.h): this translation unit compiles in a second or two.
#pragma once

#include <cstddef>
#include <cstdint>

namespace roformer {

struct HostCacheStats {
  bool enabled = false;
  size_t live_bytes = 0;        // large blocks in use by tensors
  size_t cached_bytes = 0;      // large blocks kept for reuse
  size_t peak_live_bytes = 0;   // the most large-block bytes in use at once
  uint64_t hits = 0;            // large allocations served from the cache
  uint64_t misses = 0;          // large allocations that mapped fresh memory
};

// Makes the caching allocator libtorch's CPU allocator (once; later calls do nothing).
// ROFORMER_HOST_CACHE=0 leaves libtorch's default allocator in place.
void install_host_allocator();

// Unmaps every cached block (blocks in use stay): resident memory falls to what
// tensors hold. Cheap when the cache is empty.
void release_host_cache();

HostCacheStats host_cache_stats();

}  // namespace roformer
