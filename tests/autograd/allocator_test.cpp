// The caching allocator: blocks come back for the same size class, counters say where each came
// from, and tensors are built on it.
#include "autograd/allocator.hpp"

#include <gtest/gtest.h>

#include <cstdint>

#include "autograd/tensor.hpp"

using namespace ag;

TEST(Allocator, FreedBlockIsHandedOutAgainForTheSameSize) {
  void* first = allocate_block(5000);
  free_block(first, 5000);
  const AllocatorStats before = allocator_stats();
  void* second = allocate_block(5000);
  EXPECT_EQ(second, first);
  EXPECT_EQ(allocator_stats().cached_allocations, before.cached_allocations + 1);
  EXPECT_EQ(allocator_stats().system_allocations, before.system_allocations);
  free_block(second, 5000);
}

TEST(Allocator, NearbySizesShareAClassAndBlocksAreAligned) {
  void* a = allocate_block(4100);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
  free_block(a, 4100);
  void* b = allocate_block(4200);  // same class (eight per power of two)
  EXPECT_EQ(b, a);
  free_block(b, 4200);
}

TEST(Allocator, DifferentClassesDoNotShare) {
  release_cached_blocks();  // an earlier test may have left a block of the large class
  void* small = allocate_block(64);
  free_block(small, 64);
  const AllocatorStats before = allocator_stats();
  void* large = allocate_block(1 << 20);
  EXPECT_NE(large, small);
  EXPECT_EQ(allocator_stats().system_allocations, before.system_allocations + 1);
  free_block(large, 1 << 20);
}

TEST(Allocator, TensorsReuseTheStorageOfDeadTensors) {
  { Tensor warm({123, 45}); }
  const std::int64_t before = allocator_stats().system_allocations;
  for (int i = 0; i < 10; ++i) {
    Tensor t({123, 45});
    t.fill(i);
    EXPECT_EQ(t.at(0), i);
  }
  EXPECT_EQ(allocator_stats().system_allocations, before);
}

TEST(Allocator, BytesInUseFollowLiveBlocks) {
  const std::int64_t before = allocator_stats().bytes_in_use;
  void* p = allocate_block(1 << 16);
  EXPECT_EQ(allocator_stats().bytes_in_use, before + (1 << 16));
  free_block(p, 1 << 16);
  EXPECT_EQ(allocator_stats().bytes_in_use, before);
}

TEST(Allocator, ReleaseEmptiesTheCache) {
  void* p = allocate_block(3 << 20);
  free_block(p, 3 << 20);
  EXPECT_GT(allocator_stats().bytes_cached, 0);
  release_cached_blocks();
  EXPECT_EQ(allocator_stats().bytes_cached, 0);
}

TEST(Tensor, EmptyHasShapeAndUsableStorage) {
  Tensor t = Tensor::empty({3, 4}, DType::Float64);
  EXPECT_EQ(t.shape(), (Shape{3, 4}));
  t.fill(2.5);
  EXPECT_EQ(t.at(11), 2.5);
}
