// The caching allocator behind every Tensor's storage. A freed block is kept in a free list for its
// size class and handed out again, so a training loop, which makes tensors of the same sizes every
// step, stops asking the system for memory after its first steps (no page faults, no returning
// memory to the kernel and taking it back, no lock on the process's memory map between threads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

namespace ag {

struct AllocatorStats {
  std::int64_t system_allocations = 0;  // blocks obtained from the system (operator new)
  std::int64_t cached_allocations = 0;  // requests served from the cache
  std::int64_t bytes_in_use = 0;        // handed out and not yet freed, by size class
  std::int64_t bytes_cached = 0;        // kept in free lists
};

/// Counters since the start of the process (thread-safe snapshot).
AllocatorStats allocator_stats();

/// A 64-byte-aligned block of at least `bytes` bytes (one AVX-512 register, one cache line), from
/// the cache when one of the same size class is free. Thread-safe; never returns null.
void* allocate_block(std::size_t bytes);

/// Returns a block from allocate_block(bytes), with the same `bytes`, to the cache.
void free_block(void* block, std::size_t bytes) noexcept;

/// Gives every cached block back to the system (for tools that finish a phase, and for tests).
void release_cached_blocks();

/// A standard allocator over the cache, for the control blocks of shared storage.
template <class T>
struct CachingAllocator {
  using value_type = T;
  CachingAllocator() = default;
  template <class U>
  CachingAllocator(const CachingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(allocate_block(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { free_block(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const CachingAllocator<U>&) const noexcept {
    return true;
  }
};

/// An uninitialised array of n T's in one cached block, shared like a Tensor's storage (its control
/// block comes from the cache too). For the scratch and the saved masks of kernels.
template <class T>
std::shared_ptr<T[]> make_cached_array(std::size_t n) {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= 64);
  T* p = static_cast<T*>(allocate_block(n * sizeof(T)));
  return std::shared_ptr<T[]>(
      p, [n](T* q) { free_block(q, n * sizeof(T)); }, CachingAllocator<T>{});
}

}  // namespace ag
