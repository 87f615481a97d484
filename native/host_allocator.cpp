// A caching allocator for large CPU tensors.
//
// A training step allocates and frees the same large tensors every step: attention
// scores, feed-forward intermediates, their gradients (for the small model at length
// 512, 6–50 MB each). glibc serves them either from its heap arenas, which fragment
// and keep the step's peak resident (2.8 GB there), or, above its mmap threshold, from
// fresh mappings whose pages the kernel zero-fills on first touch in every step (the
// 4 MiB threshold used for issue 12 made that step 1.65× slower).
//
// Here each large block is a mapping of its own, kept after its tensor dies and handed
// to the next request it fits (best fit, at most 25% larger): in a steady training
// loop every step reuses the previous step's blocks, so no page is faulted twice. The
// cache is bounded: before mapping a new block, cached blocks (largest first) are
// unmapped until the mapped total stays within the peak of bytes in use so far plus
// 64 MiB, so resident memory stays at the live peak, as with one mapping per tensor.
// release_host_cache() unmaps them all (model.dispose(), checkpoints, every 100 steps).
//
// Blocks below 1 MiB go to glibc (c10::alloc_cpu), as with libtorch's own allocator.

#include "host_allocator.h"

#include "env_switch.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

namespace roformer {

namespace {

constexpr size_t kLargeBytes = size_t{1} << 20;  // from here on, blocks are cached
constexpr size_t kGranule = size_t{64} << 10;    // block sizes are multiples of this
constexpr size_t kSlackBytes = size_t{64} << 20; // mapped total may exceed the live peak by this

class HostAllocator final : public c10::Allocator {
 public:
  // libtorch 1.13 declares allocate() const; libtorch ≥ 2.3 non-const. Both are defined,
  // and whichever the base class declares is the override (the other is a plain method).
  c10::DataPtr allocate(size_t bytes) const { return const_cast<HostAllocator*>(this)->get(bytes); }
  c10::DataPtr allocate(size_t bytes) { return get(bytes); }
  // libtorch ≥ 2.3 requires copy_data() (clone()); harmless before.
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  // The context of every DataPtr is its data pointer, so raw_allocate() works too.
  c10::DeleterFnPtr raw_deleter() const override { return &HostAllocator::deallocate; }

  static HostAllocator& instance() {
    static auto* allocator = new HostAllocator();  // never destroyed: tensors may outlive static destructors
    return *allocator;
  }

  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [size, ptr] : cached_) unmap(ptr, size);
    cached_.clear();
  }

  HostCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    HostCacheStats s;
    s.enabled = true;
    s.live_bytes = live_;
    s.cached_bytes = mapped_ - live_;
    s.peak_live_bytes = peak_live_;
    s.hits = hits_;
    s.misses = misses_;
    return s;
  }

 private:
  c10::DataPtr get(size_t bytes) {
    void* ptr = bytes >= kLargeBytes ? take_large(bytes) : nullptr;
    if (!ptr) ptr = c10::alloc_cpu(bytes);  // small, or no mapping to be had (throws when out of memory)
    return {ptr, ptr, &HostAllocator::deallocate, c10::Device(c10::DeviceType::CPU)};
  }

  void* take_large(size_t bytes) {
    const size_t size = (bytes + kGranule - 1) / kGranule * kGranule;
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    size_t block = size;
    auto fit = cached_.lower_bound(size);
    if (fit != cached_.end() && fit->first <= size + size / 4) {
      block = fit->first;
      ptr = fit->second;
      cached_.erase(fit);
      ++hits_;
    } else {
      // Stay within the live peak: unmap cached blocks, largest first, before mapping more.
      const size_t budget = std::max(peak_live_, live_ + size) + kSlackBytes;
      while (!cached_.empty() && mapped_ + size > budget) {
        auto largest = std::prev(cached_.end());
        unmap(largest->second, largest->first);
        cached_.erase(largest);
      }
      ptr = map(size);
      if (!ptr && !cached_.empty()) {  // out of address space or memory: give everything back, try once more
        for (const auto& [s, p] : cached_) unmap(p, s);
        cached_.clear();
        ptr = map(size);
      }
      if (!ptr) return nullptr;
      ++misses_;
    }
    in_use_[ptr] = block;
    live_ += block;
    peak_live_ = std::max(peak_live_, live_);
    return ptr;
  }

  static void deallocate(void* ptr) {
    if (ptr) instance().give_back(ptr);
  }

  void give_back(void* ptr) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = in_use_.find(ptr);
      if (it != in_use_.end()) {
        live_ -= it->second;
        cached_.emplace(it->second, ptr);
        in_use_.erase(it);
        return;
      }
    }
    c10::free_cpu(ptr);  // a small block (glibc's)
  }

  void* map(size_t size) {
    void* ptr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptr == MAP_FAILED) return nullptr;
    mapped_ += size;
    return ptr;
  }

  void unmap(void* ptr, size_t size) {
    munmap(ptr, size);
    mapped_ -= size;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> cached_;      // free blocks by size
  std::unordered_map<void*, size_t> in_use_; // large blocks held by tensors, with their sizes
  size_t mapped_ = 0;
  size_t live_ = 0;
  size_t peak_live_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

bool installed = false;
std::once_flag install_once;

}  // namespace

void install_host_allocator() {
  std::call_once(install_once, [] {
    if (!switched_on("ROFORMER_HOST_CACHE")) return;
    // Priority above libtorch's default allocator (0); ours lives for the whole process.
    c10::SetCPUAllocator(&HostAllocator::instance(), /*priority=*/1);
    installed = true;
  });
}

void release_host_cache() {
  if (installed) HostAllocator::instance().release_cached();
}

HostCacheStats host_cache_stats() { return installed ? HostAllocator::instance().stats() : HostCacheStats{}; }

}  // namespace roformer
