// The graph's own objects without the heap: BackwardFn (a move-only closure in a cached block),
// OpName (string literals only), inline shapes and input lists, and nodes from the caching allocator.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <type_traits>

#include "autograd/allocator.hpp"
#include "autograd/engine.hpp"
#include "autograd/variable.hpp"

using namespace ag;

namespace {

// An op name must be a literal: a runtime string would dangle once the caller's string is gone.
static_assert(!std::is_constructible_v<OpName, std::string>);
static_assert(std::is_nothrow_move_constructible_v<BackwardFn>);
static_assert(!std::is_copy_constructible_v<BackwardFn>);

// y = x, whose backward holds a move-only object that counts as "saved".
Variable identity_holding(const Variable& x, std::unique_ptr<int> held) {
  return record(x.value().clone(), "identity_holding", {x},
                [held = std::move(held)](const Tensor& dy, const GradMask&) {
                  Tensor dx = dy.clone();
                  dx.set(0, dx.at(0) * *held);
                  return TensorList{dx};
                });
}

TEST(BackwardFn, RunsAMoveOnlyClosure) {
  Variable x(Tensor::full({2}, 1.0, DType::Float64), true);
  identity_holding(x, std::make_unique<int>(3)).backward(Tensor::ones({2}, DType::Float64));
  EXPECT_EQ(x.grad().at(0), 3.0);
  EXPECT_EQ(x.grad().at(1), 1.0);
}

TEST(BackwardFn, MovingTransfersTheClosureAndEmptiesTheSource) {
  auto saved = std::make_shared<int>(5);
  BackwardFn f = [saved](const Tensor& dy, const GradMask&) { return TensorList{dy.clone()}; };
  EXPECT_EQ(saved.use_count(), 2);
  BackwardFn g = std::move(f);
  EXPECT_FALSE(f);
  ASSERT_TRUE(g);
  EXPECT_EQ(saved.use_count(), 2);  // moved, not copied
  const TensorList out = g(Tensor::ones({1}), GradMask{true});
  EXPECT_EQ(out.size(), 1u);
  g.reset();
  EXPECT_EQ(saved.use_count(), 1);  // the closure and what it held are gone
}

TEST(BackwardFn, ClosuresComeFromTheCachingAllocator) {
  const std::int64_t before = allocator_stats().cached_allocations + allocator_stats().system_allocations;
  BackwardFn f = [](const Tensor& dy, const GradMask&) { return TensorList{dy}; };
  EXPECT_EQ(allocator_stats().cached_allocations + allocator_stats().system_allocations, before + 1);
}

TEST(GraphMemory, NodesAndVariablesReuseCachedBlocks) {
  Variable x(Tensor::full({4}, 2.0), true);
  const auto step = [&] {
    x.zero_grad();
    identity_holding(identity_holding(x, std::make_unique<int>(2)), std::make_unique<int>(3))
        .backward(Tensor::ones({4}));
  };
  for (int i = 0; i < 3; ++i) step();  // the first steps fill the cache (and x.grad keeps a block)
  const std::int64_t before = allocator_stats().system_allocations;
  for (int i = 0; i < 5; ++i) step();
  EXPECT_EQ(allocator_stats().system_allocations, before);
  EXPECT_EQ(x.grad().at(0), 6.0);
}

TEST(GraphMemory, ShapesBeyondFiveDimensionsSpillAndStillWork) {
  Tensor t = Tensor::zeros({2, 3, 1, 2, 1, 2, 2});
  EXPECT_EQ(t.dim(), 7);
  EXPECT_EQ(t.numel(), 48);
  EXPECT_EQ(t.reshape({6, -1}).shape(), (Shape{6, 8}));
  EXPECT_EQ(shape_str(t.shape()), "[2, 3, 1, 2, 1, 2, 2]");
}

}  // namespace
