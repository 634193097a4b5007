// Size-class free lists under one mutex. A step of LeNet training makes a few dozen blocks per
// thread, so the lock costs microseconds per step and is rarely contended.
#include "autograd/allocator.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <mutex>
#include <new>
#include <vector>

namespace ag {

namespace {

constexpr std::align_val_t kAlignment{64};

// Size classes: multiples of 64 bytes up to 1 KiB, then eight classes per power of two, so a block
// is at most 12.5% larger than asked for and nearby sizes (the last, shorter batch of an epoch)
// share blocks.
constexpr std::size_t kSmallStep = 64, kSmallLimit = 1024, kSubClasses = 8;

std::size_t class_index(std::size_t bytes) {
  if (bytes <= kSmallLimit) return (std::max<std::size_t>(bytes, 1) + kSmallStep - 1) / kSmallStep;
  const int log2 = std::bit_width(bytes - 1) - 1;  // 2^log2 < bytes <= 2^(log2 + 1)
  const std::size_t step = (std::size_t{1} << log2) / kSubClasses;
  const std::size_t sub = (bytes - (std::size_t{1} << log2) + step - 1) / step;  // 1 .. 8
  return kSmallLimit / kSmallStep + static_cast<std::size_t>(log2 - 10) * kSubClasses + sub;
}

std::size_t class_bytes(std::size_t bytes) {
  if (bytes <= kSmallLimit) return class_index(bytes) * kSmallStep;
  const int log2 = std::bit_width(bytes - 1) - 1;
  const std::size_t step = (std::size_t{1} << log2) / kSubClasses;
  return (std::size_t{1} << log2) + ((bytes - (std::size_t{1} << log2) + step - 1) / step) * step;
}

constexpr std::size_t kClasses = kSmallLimit / kSmallStep + 64 * kSubClasses + 1;

struct Cache {
  std::mutex mutex;
  std::array<std::vector<void*>, kClasses> free;
  AllocatorStats stats;
};

Cache& cache() {
  static Cache* instance = new Cache;  // never destroyed: tensors may outlive static destructors
  return *instance;
}

}  // namespace

void* allocate_block(std::size_t bytes) {
  const std::size_t index = class_index(bytes), size = class_bytes(bytes);
  Cache& c = cache();
  {
    std::lock_guard lock(c.mutex);
    c.stats.bytes_in_use += static_cast<std::int64_t>(size);
    auto& list = c.free[index];
    if (!list.empty()) {
      void* block = list.back();
      list.pop_back();
      ++c.stats.cached_allocations;
      c.stats.bytes_cached -= static_cast<std::int64_t>(size);
      return block;
    }
    ++c.stats.system_allocations;
  }
  return ::operator new(size, kAlignment);
}

void free_block(void* block, std::size_t bytes) noexcept {
  if (!block) return;
  const std::size_t index = class_index(bytes), size = class_bytes(bytes);
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  c.stats.bytes_in_use -= static_cast<std::int64_t>(size);
  try {
    c.free[index].push_back(block);
    c.stats.bytes_cached += static_cast<std::int64_t>(size);
  } catch (const std::bad_alloc&) {
    ::operator delete(block, kAlignment);  // no room to remember it: give it back
  }
}

void release_cached_blocks() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  for (auto& list : c.free) {
    for (void* block : list) ::operator delete(block, kAlignment);
    list.clear();
    list.shrink_to_fit();
  }
  c.stats.bytes_cached = 0;
}

AllocatorStats allocator_stats() {
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  return c.stats;
}

}  // namespace ag
