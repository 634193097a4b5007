// A steady training step of LeNet-5 takes no memory from the system: every tensor comes from the
// caching allocator's free lists once the first steps have filled them. Also counts the small
// heap allocations a step still makes (graph nodes, closures, shapes), which go through malloc:
// this file replaces the global operator new of its own test binary to count them.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "autograd/allocator.hpp"
#include "models/lenet.hpp"
#include "models/optim.hpp"
#include "ops/loss.hpp"

namespace {
std::atomic<long> heap_allocations{0};
}

void* operator new(std::size_t bytes) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(bytes ? bytes : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t bytes, std::align_val_t alignment) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(alignment);
  if (void* p = std::aligned_alloc(a, (bytes + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

struct Training {
  ag::Generator gen{3};
  nn::LeNet5 model{gen};
  nn::SGD sgd{model.parameters(),
              {.lr = 0.01, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
  ag::Tensor images = ag::Tensor::uniform({32, 1, 28, 28}, -1, 2, gen);
  std::vector<std::int64_t> targets = std::vector<std::int64_t>(32, 7);

  void step() {
    model.zero_grad();
    ag::nll_loss(model(ag::Variable(images)), targets).backward();
    sgd.step();
  }
};

TEST(SteadyState, TrainingStepTakesNoTensorMemoryFromTheSystem) {
  Training t;
  for (int i = 0; i < 3; ++i) t.step();
  const std::int64_t before = ag::allocator_stats().system_allocations;
  const std::int64_t served_before = ag::allocator_stats().cached_allocations;
  for (int i = 0; i < 5; ++i) t.step();
  EXPECT_EQ(ag::allocator_stats().system_allocations - before, 0);
  EXPECT_GT(ag::allocator_stats().cached_allocations - served_before,
            5 * 20)  // the cache did serve them
      << "each step makes a few dozen tensors";
}

TEST(SteadyState, InferenceTakesNoTensorMemoryFromTheSystem) {
  Training t;
  ag::NoGradGuard no_grad;
  for (int i = 0; i < 2; ++i) t.model(ag::Variable(t.images)).value();
  const std::int64_t before = ag::allocator_stats().system_allocations;
  for (int i = 0; i < 5; ++i) t.model(ag::Variable(t.images)).value();
  EXPECT_EQ(ag::allocator_stats().system_allocations - before, 0);
}

// The heap allocations that remain: each step makes the same number (nothing grows), and the
// number is printed for docs/performance.md. They are the graph's own objects (a Variable's shared
// state, a Node, its input list and backward closure per op, shape vectors), served by malloc's
// thread cache without system calls.
TEST(SteadyState, RemainingHeapAllocationsAreTheSameEveryStep) {
  Training t;
  for (int i = 0; i < 3; ++i) t.step();
  std::vector<long> per_step;
  for (int i = 0; i < 4; ++i) {
    const long before = heap_allocations.load();
    t.step();
    per_step.push_back(heap_allocations.load() - before);
  }
  for (long count : per_step) EXPECT_EQ(count, per_step[0]);
  EXPECT_LT(per_step[0], 1000);
  std::printf("[ info     ] heap allocations (operator new) per training step: %ld\n", per_step[0]);
}

}  // namespace
