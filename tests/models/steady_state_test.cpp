// A steady training step of LeNet-5 makes no heap allocation: every tensor comes from the caching
// allocator's free lists once the first steps have filled them, and nothing else in the step (the
// graph's objects, batch filling, the threads' hand-off, the matrix products, the gradient sum, the
// optimiser) allocates. This file replaces the C library's allocation functions in its own test
// binary, so it counts every heap allocation on every thread: operator new (which calls malloc),
// Eigen's aligned buffers, the C library's own.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "autograd/allocator.hpp"
#include "models/train/data_parallel.hpp"
#include "models/lenet1998.hpp"
#include "models/lenet5.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/optim.hpp"
#include "ops/loss.hpp"

namespace {
std::atomic<long> heap_allocations{0};
void count_allocation() { heap_allocations.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

// glibc lets a program replace malloc and its family (its manual, "Replacing malloc"); its own
// implementation stays reachable under these names.
extern "C" {
void* __libc_malloc(std::size_t bytes);
void* __libc_calloc(std::size_t count, std::size_t bytes);
void* __libc_realloc(void* p, std::size_t bytes);
void* __libc_memalign(std::size_t alignment, std::size_t bytes);
void __libc_free(void* p);

void* malloc(std::size_t bytes) {
  count_allocation();
  return __libc_malloc(bytes);
}
void* calloc(std::size_t count, std::size_t bytes) {
  count_allocation();
  return __libc_calloc(count, bytes);
}
void* realloc(void* p, std::size_t bytes) {
  count_allocation();
  return __libc_realloc(p, bytes);
}
void* memalign(std::size_t alignment, std::size_t bytes) {
  count_allocation();
  return __libc_memalign(alignment, bytes);
}
void* aligned_alloc(std::size_t alignment, std::size_t bytes) {
  count_allocation();
  return __libc_memalign(alignment, bytes);
}
int posix_memalign(void** p, std::size_t alignment, std::size_t bytes) {
  count_allocation();
  *p = __libc_memalign(alignment, bytes);
  return *p ? 0 : ENOMEM;
}
void free(void* p) { __libc_free(p); }
}

namespace {

// The simplest training step: one thread, a batch tensor made once, of the batch size (100:
// large enough that the matrix products' packing buffers are not small).
struct Training {
  ag::Generator gen{3};
  nn::LeNet5 model{gen};
  nn::SGD sgd{model.parameters(),
              {.lr = 0.01, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
  ag::Tensor images = ag::Tensor::uniform({100, 1, 28, 28}, -1, 2, gen);
  std::vector<std::int64_t> targets = std::vector<std::int64_t>(100, 7);

  void step() {
    model.zero_grad();
    ag::nll_loss(model(ag::Variable(images)), targets).backward();
    sgd.step();
  }
};

// lenet train's step: shifts drawn from the run's generator, each shard filling its own examples
// from MNIST-like bytes on its own thread, forward and backward per shard, the gradient sum and the
// SGD update split over the threads.
struct ParallelTraining {
  nn::MnistSplit data = digits();
  ag::Generator gen{3};
  nn::LeNet5 model{gen};
  nn::DataParallel parallel{model, nn::factory_of<nn::LeNet5>(), 2};
  nn::SGD sgd{model.parameters(),
              {.lr = 0.01, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
  std::vector<std::int64_t> order = nn::example_order(data.count, &gen);
  std::vector<nn::Shift> shifts = std::vector<nn::Shift>(kBatch);
  std::vector<std::uint8_t> predictions;
  std::int64_t next = 0;

  static constexpr std::int64_t kBatch = 100;
  static constexpr std::int64_t kExamples = 3 * kBatch;  // so that batches never wrap around

  static nn::MnistSplit digits() {
    nn::MnistSplit split{.count = kExamples, .rows = 28, .cols = 28, .images = {}, .labels = {}};
    ag::Generator pixels(1);
    for (std::int64_t i = 0; i < kExamples * 784; ++i)
      split.images.push_back(static_cast<std::uint8_t>(pixels.below(256)));
    for (std::int64_t i = 0; i < kExamples; ++i)
      split.labels.push_back(static_cast<std::uint8_t>(i % 10));
    return split;
  }

  void step() {
    const std::span<const std::int64_t> indices(order.data() + next, kBatch);
    next = (next + kBatch) % data.count;
    nn::draw_shifts(shifts, 2, gen);
    const auto result = parallel.step(
        kBatch,
        [&](std::int64_t begin, std::int64_t end, ag::Tensor& images, std::vector<std::int64_t>& targets) {
          const auto offset = static_cast<std::size_t>(begin), count = static_cast<std::size_t>(end - begin);
          nn::fill_batch(images, targets, data, indices.subspan(offset, count), nn::BatchOptions{.max_shift = 2},
                         std::span<const nn::Shift>(shifts).subspan(offset, count));
        },
        sgd, predictions);
    ASSERT_TRUE(result.updated);
  }
};

// Heap allocations of each of `steps` steps after `warmup` steps.
template <class Step>
std::vector<long> allocations_per_step(Step&& step, int warmup, int steps) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<long> counts;
  for (int i = 0; i < steps; ++i) {
    const long before = heap_allocations.load();
    step();
    counts.push_back(heap_allocations.load() - before);
  }
  return counts;
}

// Whether, within `limit` steps, `window` steps in a row each made `expected` allocations. With two
// threads the tensor cache is shared, and the order in which the threads take and return blocks
// varies from step to step: for a while after warm-up an unlucky order can still find a size class
// empty and take a block from the system (each class's need is bounded, so this stops).
template <class Step>
testing::AssertionResult settles_at(long expected, Step&& step, int limit = 200, int window = 5) {
  std::vector<long> counts;
  int in_a_row = 0;
  for (long count : allocations_per_step(step, 0, 1)) counts.push_back(count);
  while (true) {
    in_a_row = counts.back() == expected ? in_a_row + 1 : 0;
    if (in_a_row == window) return testing::AssertionSuccess();
    if (static_cast<int>(counts.size()) == limit) break;
    counts.push_back(allocations_per_step(step, 0, 1)[0]);
  }
  auto failure = testing::AssertionFailure();
  failure << "never " << window << " steps in a row with " << expected << " allocations; per step:";
  for (long count : counts) failure << ' ' << count;
  return failure;
}

// A forward and backward of the bare graph of a shard, as DataParallel runs it: what the engine
// allocates, which the lead's engine change brings to zero.
long graph_allocations(std::int64_t shard_size) {
  ag::Generator gen(3);
  nn::LeNet5 model(gen);
  const ag::Variable input(ag::Tensor::uniform({shard_size, 1, 28, 28}, -1, 2, gen));
  const std::vector<std::int64_t> targets(static_cast<std::size_t>(shard_size), 7);
  auto step = [&] {
    model.zero_grad();
    ag::nll_loss(model(input), targets).backward();
  };
  return allocations_per_step(step, 3, 1)[0];
}

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

// The counter is what the tests below trust: it must see allocations on the worker threads too,
// and by every route a library may take to the heap.
TEST(SteadyState, CounterSeesAllocationsOnEveryThread) {
  ag::Generator gen(1);
  nn::LeNet5 model(gen);
  nn::DataParallel parallel(model, nn::factory_of<nn::LeNet5>(), 2);
  std::vector<std::unique_ptr<int>> made(2);
  const long before = heap_allocations.load();
  parallel.run(2, [&](int shard, nn::Model&) { made[static_cast<std::size_t>(shard)] = std::make_unique<int>(shard); });
  EXPECT_EQ(heap_allocations.load() - before, 2);
  EXPECT_EQ(*made[1], 1);
}

TEST(SteadyState, CounterSeesEveryAllocationFunction) {
  // volatile: the compiler may otherwise drop an allocation whose result is only freed.
  void* volatile p = nullptr;
  const long before = heap_allocations.load();
  p = std::malloc(100);
  std::free(p);
  p = std::calloc(10, 10);
  p = std::realloc(p, 1000);
  std::free(p);
  p = std::aligned_alloc(64, 640);
  std::free(p);
  void* q = nullptr;
  ASSERT_EQ(posix_memalign(&q, 64, 640), 0);
  std::free(q);
  EXPECT_EQ(heap_allocations.load() - before, 5);
}

// The bar: no heap allocation in a steady step, whatever it is made of.
TEST(SteadyState, SingleThreadTrainingStepMakesNoHeapAllocation) {
  Training t;
  const long first_steady = allocations_per_step([&] { t.step(); }, 3, 1)[0];
  std::printf("[ info     ] heap allocations per training step, 1 thread: %ld\n", first_steady);
  EXPECT_TRUE(settles_at(0, [&] { t.step(); }, 5));
}

TEST(SteadyState, ParallelTrainingStepMakesNoHeapAllocation) {
  ParallelTraining t;
  const long first_steady = allocations_per_step([&] { t.step(); }, 3, 1)[0];
  std::printf("[ info     ] heap allocations in the 4th training step, 2 threads: %ld "
              "(the shared cache may still be filling)\n", first_steady);
  EXPECT_TRUE(settles_at(0, [&] { t.step(); }));
}

// The 1998 LeNet-5's step, at the paper's batch of 1 and at 100 (blocks of images in the lanes
// kernels, C3 with its connection table): no heap allocation either.
TEST(SteadyState, LeNet1998TrainingStepMakesNoHeapAllocation) {
  for (const std::int64_t batch : {1, 100}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    ag::Generator gen(3);
    nn::LeNet1998 model(gen);
    nn::SGD sgd(model.parameters(), {.lr = 1e-4});
    const ag::Tensor images = ag::Tensor::uniform({batch, 1, 28, 28}, -0.1, 1.175, gen);
    const std::vector<std::int64_t> targets(static_cast<std::size_t>(batch), 3);
    const auto step = [&] {
      model.zero_grad();
      model.loss(model(ag::Variable(images)), targets).backward();
      sgd.step();
    };
    EXPECT_TRUE(settles_at(0, step, 10));
  }
}

// What the parallel step adds to its two shards' graphs (batch filling, the hand-off, the gradient
// sum, the optimiser, predictions and losses): nothing. This holds whether or not the graph itself
// still allocates, so it tells the two apart.
TEST(SteadyState, ParallelStepAllocatesNothingBeyondItsShardsGraphs) {
  const long per_graph = graph_allocations(ParallelTraining::kBatch / 2);
  ParallelTraining t;
  const long first_steady = allocations_per_step([&] { t.step(); }, 3, 1)[0];
  std::printf("[ info     ] a shard's graph: %ld heap allocations; a 2-thread step: %ld\n", per_graph,
              first_steady);
  EXPECT_TRUE(settles_at(2 * per_graph, [&] { t.step(); }));
}

}  // namespace
