// Size-class free lists, one set per thread, so that the common case takes no lock (under one
// mutex, locking was 5% of a single image's inference), and a shared set under a mutex for the
// blocks of exited threads and a thread's overflow.
#include "autograd/allocator.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <memory>
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

// The block size of class `index`: class_bytes of any size in the class.
std::int64_t bytes_of_class(std::size_t index) {
  constexpr std::size_t kSmallClasses = kSmallLimit / kSmallStep;
  if (index <= kSmallClasses) return static_cast<std::int64_t>(index * kSmallStep);
  const std::size_t j = index - kSmallClasses - 1;
  const std::size_t power = std::size_t{1} << (10 + j / kSubClasses);
  return static_cast<std::int64_t>(power + (j % kSubClasses + 1) * (power / kSubClasses));
}

// A thread keeps at most this many bytes of free blocks to itself; more go to the shared lists.
// (A thread that frees what another allocates would otherwise hoard them.)
constexpr std::int64_t kThreadCacheLimit = std::int64_t{256} << 20;

using FreeLists = std::array<std::vector<void*>, kClasses>;

// A thread's counters: written by that thread only (a relaxed load and store, no locked
// instruction), read by allocator_stats() from any thread.
struct Counters {
  std::atomic<std::int64_t> system_allocations{0}, cached_allocations{0}, bytes_in_use{0},
      bytes_cached{0};
};

void add(std::atomic<std::int64_t>& counter, std::int64_t delta) {
  counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

struct ThreadCache {
  FreeLists free;
  Counters counters;
};

// The lists of blocks that no live thread holds (those of exited threads, and overflow), the
// registry of thread caches for allocator_stats(), and the counts of exited threads.
struct Shared {
  std::mutex mutex;
  FreeLists free;
  std::vector<ThreadCache*> threads;
  AllocatorStats retired;
};

Shared& shared() {
  static Shared* instance = new Shared;  // never destroyed: tensors may outlive static destructors
  return *instance;
}

// Keeps a block in `lists`, or gives it back to the system if there is no memory to remember it.
bool keep(FreeLists& lists, std::size_t index, void* block) noexcept {
  try {
    lists[index].push_back(block);
    return true;
  } catch (const std::bad_alloc&) {
    ::operator delete(block, kAlignment);
    return false;
  }
}

// The calling thread's cache: made on first use, handed to the shared lists when the thread
// exits. Null while the thread's thread_local objects are being destroyed (a tensor freed by a
// later destructor goes to the shared lists).
thread_local ThreadCache* current = nullptr;
thread_local bool exited = false;

struct Retire {
  ~Retire() {
    ThreadCache* cache = current;
    current = nullptr;
    exited = true;
    if (!cache) return;
    Shared& s = shared();
    std::lock_guard lock(s.mutex);
    for (std::size_t index = 0; index < kClasses; ++index)
      for (void* block : cache->free[index])
        if (!keep(s.free, index, block)) s.retired.bytes_cached -= bytes_of_class(index);
    const Counters& c = cache->counters;
    s.retired.system_allocations += c.system_allocations.load(std::memory_order_relaxed);
    s.retired.cached_allocations += c.cached_allocations.load(std::memory_order_relaxed);
    s.retired.bytes_in_use += c.bytes_in_use.load(std::memory_order_relaxed);
    s.retired.bytes_cached += c.bytes_cached.load(std::memory_order_relaxed);
    std::erase(s.threads, cache);
    delete cache;
  }
};
thread_local Retire retire;

ThreadCache* thread_cache() {
  if (current || exited) return current;
  auto cache = std::make_unique<ThreadCache>();
  {
    Shared& s = shared();
    std::lock_guard lock(s.mutex);
    s.threads.push_back(cache.get());
  }
  (void)&retire;  // its first use registers the destructor that hands the cache back
  current = cache.release();
  return current;
}

// A block of class `index` from the shared lists, or null.
void* take_shared(std::size_t index) {
  Shared& s = shared();
  std::lock_guard lock(s.mutex);
  auto& list = s.free[index];
  if (list.empty()) return nullptr;
  void* block = list.back();
  list.pop_back();
  return block;
}

}  // namespace

void* allocate_block(std::size_t bytes) {
  const std::size_t index = class_index(bytes);
  const auto size = static_cast<std::int64_t>(class_bytes(bytes));
  ThreadCache* cache = thread_cache();
  if (cache) {
    Counters& c = cache->counters;
    add(c.bytes_in_use, size);
    auto& list = cache->free[index];
    void* block = nullptr;
    if (!list.empty()) {
      block = list.back();
      list.pop_back();
    } else {
      block = take_shared(index);
    }
    if (block) {
      add(c.cached_allocations, 1);
      add(c.bytes_cached, -size);
      return block;
    }
    add(c.system_allocations, 1);
    return ::operator new(static_cast<std::size_t>(size), kAlignment);
  }
  // The thread is exiting: the shared lists and counters, under the lock.
  void* block = take_shared(index);
  Shared& s = shared();
  std::lock_guard lock(s.mutex);
  s.retired.bytes_in_use += size;
  if (block) {
    ++s.retired.cached_allocations;
    s.retired.bytes_cached -= size;
    return block;
  }
  ++s.retired.system_allocations;
  return ::operator new(static_cast<std::size_t>(size), kAlignment);
}

void free_block(void* block, std::size_t bytes) noexcept {
  if (!block) return;
  const std::size_t index = class_index(bytes);
  const auto size = static_cast<std::int64_t>(class_bytes(bytes));
  ThreadCache* cache = thread_cache();
  if (cache &&
      cache->counters.bytes_cached.load(std::memory_order_relaxed) + size <= kThreadCacheLimit) {
    Counters& c = cache->counters;
    add(c.bytes_in_use, -size);
    if (keep(cache->free, index, block)) add(c.bytes_cached, size);
    return;
  }
  Shared& s = shared();
  std::lock_guard lock(s.mutex);
  s.retired.bytes_in_use -= size;
  if (keep(s.free, index, block)) s.retired.bytes_cached += size;
}

void release_cached_blocks() {
  if (ThreadCache* cache = thread_cache()) {
    for (std::size_t index = 0; index < kClasses; ++index) {
      auto& list = cache->free[index];
      for (void* block : list) ::operator delete(block, kAlignment);
      add(cache->counters.bytes_cached,
          -static_cast<std::int64_t>(list.size()) * bytes_of_class(index));
      list.clear();
      list.shrink_to_fit();
    }
  }
  Shared& s = shared();
  std::lock_guard lock(s.mutex);
  for (std::size_t index = 0; index < kClasses; ++index) {
    auto& list = s.free[index];
    for (void* block : list) ::operator delete(block, kAlignment);
    s.retired.bytes_cached -= static_cast<std::int64_t>(list.size()) * bytes_of_class(index);
    list.clear();
    list.shrink_to_fit();
  }
}

AllocatorStats allocator_stats() {
  Shared& s = shared();
  std::lock_guard lock(s.mutex);
  AllocatorStats total = s.retired;
  for (const ThreadCache* cache : s.threads) {
    const Counters& c = cache->counters;
    total.system_allocations += c.system_allocations.load(std::memory_order_relaxed);
    total.cached_allocations += c.cached_allocations.load(std::memory_order_relaxed);
    total.bytes_in_use += c.bytes_in_use.load(std::memory_order_relaxed);
    total.bytes_cached += c.bytes_cached.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace ag
