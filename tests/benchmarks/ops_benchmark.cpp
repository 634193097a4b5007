// Micro-benchmarks of every op LeNet-5 uses, forward and backward, at LeNet's shapes (float32,
// batch 100 unless the name says otherwise), the batch preparation, and a whole inference and a
// whole training step.
//   ./build/tests/benchmarks/ops_benchmark --benchmark_filter=Conv
// A backward is timed alone: its reported time is the thread's CPU time around backward(), its
// forward untimed. On a shared machine read CPU times: other processes' load inflates wall time.
#include <benchmark/benchmark.h>

#include <ctime>
#include <vector>

#include "autograd/subnormals.hpp"
#include "models/lenet5.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/optim.hpp"
#include "ops/fusion/fusion.hpp"
#include "ops/ops.hpp"

namespace {

using namespace ag;

Variable random(Shape shape, std::uint64_t seed, bool requires_grad) {
  Generator gen(seed);
  return Variable(Tensor::uniform(std::move(shape), -1, 1, gen), requires_grad);
}

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Times `op`'s forward (no graph) per iteration.
template <class Op>
void forward(benchmark::State& state, Op&& op) {
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(op().value().raw_data());
}

// Times only the backward of `op`'s graph, seeded with a fixed random gradient.
template <class Op>
void backward(benchmark::State& state, Op&& op) {
  Tensor grad_output;
  for (auto _ : state) {
    const Variable y = op();
    if (!grad_output.defined()) {
      Generator gen(7);
      grad_output = Tensor::uniform(y.shape(), -1, 1, gen);
    }
    y.value();  // a deferred result is computed before the clock starts
    const double start = thread_cpu_seconds();
    y.backward(grad_output);
    state.SetIterationTime(thread_cpu_seconds() - start);
  }
}

constexpr std::int64_t N = 100;

// LeNet's parameters and the inputs each layer sees.
struct Layers {
  Variable image = random({N, 1, 28, 28}, 1, false);
  Variable conv1_w = random({6, 1, 5, 5}, 2, true), conv1_b = random({6}, 3, true);
  Variable conv1_out = random({N, 6, 14, 14}, 4, true);  // conv2's input
  Variable conv2_w = random({16, 6, 5, 5}, 5, true), conv2_b = random({16}, 6, true);
  Variable fc1_in = random({N, 400}, 7, true);
  Variable fc1_w = random({120, 400}, 8, true), fc1_b = random({120}, 9, true);
  Variable z = random({N, 6, 28, 28}, 10, true);  // conv1's output, for relu and max_pool2d
  Variable logits = random({N, 10}, 11, true);
  std::vector<std::int64_t> targets = std::vector<std::int64_t>(N, 3);
};
const Layers& layers() {
  static const Layers l;
  return l;
}

// The fused conv -> relu -> pool, as the model script reaches it, on the layer's input x.
Variable conv1_block_of(const Variable& x) {
  const Layers& l = layers();
  return max_pool2d(relu(conv2d(x, l.conv1_w, l.conv1_b, 1, 2)), 2);
}
Variable conv2_block_of(const Variable& x) {
  const Layers& l = layers();
  return max_pool2d(relu(conv2d(x, l.conv2_w, l.conv2_b)), 2);
}
Variable conv1_block() { return conv1_block_of(layers().image); }
Variable conv2_block() { return conv2_block_of(layers().conv1_out); }
// The same chains through the unfused ops (the reference path).
Variable conv1_block_unfused() {
  NoFusionGuard unfused;
  return conv1_block();
}
Variable conv2_block_unfused() {
  NoFusionGuard unfused;
  return conv2_block();
}

// One image through each block: what a single prediction's latency is made of.
Variable conv1_block_one_image() {
  static const Variable image = random({1, 1, 28, 28}, 15, false);
  return conv1_block_of(image);
}
Variable conv2_block_one_image() {
  static const Variable x = random({1, 6, 14, 14}, 16, false);
  return conv2_block_of(x);
}

void BM_Conv1ReluPool_Forward(benchmark::State& s) { forward(s, conv1_block); }
void BM_Conv1ReluPool_Backward(benchmark::State& s) { backward(s, conv1_block); }
void BM_Conv2ReluPool_Forward(benchmark::State& s) { forward(s, conv2_block); }
void BM_Conv2ReluPool_Backward(benchmark::State& s) { backward(s, conv2_block); }
void BM_Conv1ReluPool_Forward_Batch1(benchmark::State& s) { forward(s, conv1_block_one_image); }
void BM_Conv2ReluPool_Forward_Batch1(benchmark::State& s) { forward(s, conv2_block_one_image); }
void BM_Conv1ReluPoolUnfused_Forward(benchmark::State& s) { forward(s, conv1_block_unfused); }
void BM_Conv1ReluPoolUnfused_Backward(benchmark::State& s) { backward(s, conv1_block_unfused); }
void BM_Conv2ReluPoolUnfused_Forward(benchmark::State& s) { forward(s, conv2_block_unfused); }
void BM_Conv2ReluPoolUnfused_Backward(benchmark::State& s) { backward(s, conv2_block_unfused); }

Variable conv2_alone() {
  NoFusionGuard unfused;
  const Layers& l = layers();
  return conv2d(l.conv1_out, l.conv2_w, l.conv2_b);
}
void BM_Conv2d_Forward(benchmark::State& s) { forward(s, conv2_alone); }
void BM_Conv2d_Backward(benchmark::State& s) { backward(s, conv2_alone); }

Variable relu_alone() { return relu(layers().z); }
void BM_Relu_Forward(benchmark::State& s) { forward(s, relu_alone); }
void BM_Relu_Backward(benchmark::State& s) { backward(s, relu_alone); }

Variable pool_alone() { return max_pool2d(layers().z, 2); }
void BM_MaxPool2d_Forward(benchmark::State& s) { forward(s, pool_alone); }
void BM_MaxPool2d_Backward(benchmark::State& s) { backward(s, pool_alone); }

Variable fc1() {
  const Layers& l = layers();
  return linear(l.fc1_in, l.fc1_w, l.fc1_b);
}
void BM_Linear_Forward(benchmark::State& s) { forward(s, fc1); }
void BM_Linear_Backward(benchmark::State& s) { backward(s, fc1); }

Variable fc1_one_row() {
  static const Variable x = random({1, 400}, 12, false);
  const Layers& l = layers();
  return linear(x, l.fc1_w, l.fc1_b);
}
void BM_Linear_Forward_Batch1(benchmark::State& s) { forward(s, fc1_one_row); }

Variable softmax_alone() { return log_softmax(layers().logits, 1); }
void BM_LogSoftmax_Forward(benchmark::State& s) { forward(s, softmax_alone); }
void BM_LogSoftmax_Backward(benchmark::State& s) { backward(s, softmax_alone); }

Variable loss_alone() { return nll_loss(layers().logits, layers().targets); }
void BM_NllLoss_Forward(benchmark::State& s) { forward(s, loss_alone); }
void BM_NllLoss_Backward(benchmark::State& s) { backward(s, loss_alone); }

// Whole network: inference at batch state.range(0), and a training step at batch 100.
void BM_LeNet_Inference(benchmark::State& state) {
  Generator gen(1);
  nn::LeNet5 model(gen);
  const Variable images = random({state.range(0), 1, 28, 28}, 13, false);
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(model(images).value().raw_data());
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_LeNet_TrainingStep(benchmark::State& state) {
  Generator gen(1);
  nn::LeNet5 model(gen);
  nn::SGD sgd(model.parameters(), {.lr = 0.01, .momentum = 0.9});
  const Variable images = random({N, 1, 28, 28}, 14, false);
  const std::vector<std::int64_t>& targets = layers().targets;
  for (auto _ : state) {
    model.zero_grad();
    nll_loss(model(images), targets).backward();
    sgd.step();
  }
  state.SetItemsProcessed(state.iterations() * N);
}

// Batch preparation: 100 MNIST-sized images of bytes to normalised float32, unshifted and with
// the training's random shifts of up to 2 pixels, drawn in shuffled order from 60,000 images (47 MB,
// more than the caches hold), as in training.
void fill_batch_of_100(benchmark::State& state, int max_shift) {
  static const nn::MnistSplit data = [] {
    nn::MnistSplit split{.count = 60000, .rows = 28, .cols = 28, .images = {}, .labels = {}};
    split.images.resize(60000 * 784);
    Generator gen(15);
    for (auto& p : split.images) p = static_cast<std::uint8_t>(gen.below(256));
    split.labels.assign(60000, 0);
    return split;
  }();
  Generator gen(16);
  std::vector<std::int64_t> order = nn::example_order(data.count, &gen), targets;
  std::size_t next = 0;
  Tensor images;
  for (auto _ : state) {
    if (next + N > order.size()) next = 0;
    nn::fill_batch(images, targets, data, std::span<const std::int64_t>(order).subspan(next, N),
                   {.max_shift = max_shift}, &gen);
    next += N;
    benchmark::DoNotOptimize(images.raw_data());
  }
  state.SetItemsProcessed(state.iterations() * N);
}
void BM_FillBatch(benchmark::State& s) { fill_batch_of_100(s, 0); }
void BM_FillBatch_Shifted(benchmark::State& s) { fill_batch_of_100(s, 2); }

}  // namespace

BENCHMARK(BM_Conv1ReluPool_Forward);
BENCHMARK(BM_Conv1ReluPool_Backward)->UseManualTime();
BENCHMARK(BM_Conv2ReluPool_Forward);
BENCHMARK(BM_Conv2ReluPool_Backward)->UseManualTime();
BENCHMARK(BM_Conv1ReluPool_Forward_Batch1);
BENCHMARK(BM_Conv2ReluPool_Forward_Batch1);
BENCHMARK(BM_Conv1ReluPoolUnfused_Forward);
BENCHMARK(BM_Conv1ReluPoolUnfused_Backward)->UseManualTime();
BENCHMARK(BM_Conv2ReluPoolUnfused_Forward);
BENCHMARK(BM_Conv2ReluPoolUnfused_Backward)->UseManualTime();
BENCHMARK(BM_Conv2d_Forward);
BENCHMARK(BM_Conv2d_Backward)->UseManualTime();
BENCHMARK(BM_Relu_Forward);
BENCHMARK(BM_Relu_Backward)->UseManualTime();
BENCHMARK(BM_MaxPool2d_Forward);
BENCHMARK(BM_MaxPool2d_Backward)->UseManualTime();
BENCHMARK(BM_Linear_Forward);
BENCHMARK(BM_Linear_Backward)->UseManualTime();
BENCHMARK(BM_Linear_Forward_Batch1);
BENCHMARK(BM_LogSoftmax_Forward);
BENCHMARK(BM_LogSoftmax_Backward)->UseManualTime();
BENCHMARK(BM_NllLoss_Forward);
BENCHMARK(BM_NllLoss_Backward)->UseManualTime();
BENCHMARK(BM_FillBatch);
BENCHMARK(BM_FillBatch_Shifted);
BENCHMARK(BM_LeNet_Inference)->Arg(1)->Arg(100);
BENCHMARK(BM_LeNet_TrainingStep);

int main(int argc, char** argv) {
  // As in the lenet command: a training step repeated on one batch drives its gradients to
  // subnormals, which Intel CPUs compute with many times more slowly unless they are flushed.
  const FlushSubnormalsGuard flush_subnormals;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
