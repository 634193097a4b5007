// nn::DataParallel: how a batch is split, that two threads train like one (the same mean
// gradient, up to float32 summation order), that a fixed thread count repeats bit for bit (dropout
// included), that any Model trains through it, that replicas share the master's tensors and follow
// its mode, and that errors and non-finite losses stop a step before it changes the parameters.
#include "models/train/data_parallel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <thread>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "models/data/mnist.hpp"
#include "models/lenet5.hpp"
#include "models/mlp.hpp"
#include "models/nn/layers.hpp"
#include "models/nn/optim.hpp"
#include "models/nn/sequential.hpp"
#include "ops/arithmetic.hpp"

namespace {

// 64 "digits" of varied pixels and labels, so that gradients are not degenerate.
nn::MnistSplit synthetic_digits() {
  nn::MnistSplit data{.count = 64, .rows = 28, .cols = 28, .images = {}, .labels = {}};
  ag::Generator gen(9);
  for (std::int64_t i = 0; i < 64 * 784; ++i) data.images.push_back(static_cast<std::uint8_t>(gen.below(256)));
  for (std::int64_t i = 0; i < 64; ++i) data.labels.push_back(static_cast<std::uint8_t>(i % 10));
  return data;
}

std::vector<std::vector<double>> values(const nn::LeNet5& model) {
  std::vector<std::vector<double>> out;
  for (const ag::Variable& p : model.parameters()) out.push_back(p.value().to_vector());
  return out;
}

std::vector<std::vector<double>> gradients(const nn::LeNet5& model) {
  std::vector<std::vector<double>> out;
  for (const ag::Variable& p : model.parameters()) out.push_back(p.grad().to_vector());
  return out;
}

// A model, its threads and SGD, trained on the synthetic digits with lenet train's augmentation.
struct Trainer {
  const nn::MnistSplit& data;
  ag::Generator gen{1};
  nn::LeNet5 model{gen};
  nn::DataParallel parallel;
  nn::SGD sgd{model.parameters(), nn::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}};
  std::vector<nn::Shift> shifts;
  std::vector<std::uint8_t> predictions;

  Trainer(const nn::MnistSplit& d, int threads) : data(d), parallel(model, nn::factory_of<nn::LeNet5>(), threads) {}

  nn::DataParallel::StepResult step(std::span<const std::int64_t> indices) {
    shifts.resize(indices.size());
    nn::draw_shifts(shifts, 2, gen);
    return parallel.step(
        static_cast<std::int64_t>(indices.size()),
        [&](std::int64_t begin, std::int64_t end, ag::Tensor& images, std::vector<std::int64_t>& targets) {
          const auto offset = static_cast<std::size_t>(begin), count = static_cast<std::size_t>(end - begin);
          nn::fill_batch(images, targets, data, indices.subspan(offset, count), nn::BatchOptions{.max_shift = 2},
                         std::span<const nn::Shift>(shifts).subspan(offset, count));
        },
        sgd, predictions);
  }
};

std::vector<std::int64_t> first_examples(std::int64_t n) {
  std::vector<std::int64_t> indices;
  for (std::int64_t i = 0; i < n; ++i) indices.push_back((i * 7) % 64);
  return indices;
}

std::vector<std::vector<double>> values_of(const nn::Module& model) {
  std::vector<std::vector<double>> out;
  for (const ag::Variable& p : model.parameters()) out.push_back(p.value().to_vector());
  return out;
}

// A small network with dropout and a buffer: [N, 1, 28, 28] -> 784 -> 32 -> dropout 0.5 -> 10,
// logits scaled by a buffer.
class DropoutNet : public nn::Model {
 public:
  explicit DropoutNet(ag::Generator& gen) : Model(nn::InputSpec{}) {  // MNIST's 1 x 28 x 28
    layers.emplace_back<nn::Flatten>();
    layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 784, .out = 32}, gen);
    layers.emplace_back<nn::Tanh>();
    layers.emplace_back<nn::Dropout>(0.5);
    layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 32, .out = 10}, gen);
    register_module("layers", layers);
    temperature = register_buffer("temperature", ag::Tensor::full({1}, 0.5));
  }
  ag::Variable forward(const ag::Variable& x) const override { return ag::mul(layers(x), temperature); }

  nn::Sequential layers;
  ag::Variable temperature;
};

// Steps of plain SGD on the whole of `data` in batches of 32, each step's dropout seeded by
// seed + step; returns the mean loss of each step.
std::vector<double> train_steps(nn::Model& model, nn::DataParallel& parallel, const nn::MnistSplit& data,
                                int steps, std::uint64_t seed = 0) {
  nn::SGD sgd(model.parameters(), {.lr = 0.05, .momentum = 0.9});
  std::vector<std::uint8_t> predictions;
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    std::vector<std::int64_t> indices;
    for (std::int64_t i = 0; i < 32; ++i) indices.push_back((step * 32 + i) % data.count);
    const auto result = parallel.step(
        32,
        [&](std::int64_t begin, std::int64_t end, ag::Tensor& images, std::vector<std::int64_t>& targets) {
          nn::fill_batch(images, targets, data,
                         std::span<const std::int64_t>(indices).subspan(static_cast<std::size_t>(begin),
                                                                       static_cast<std::size_t>(end - begin)));
        },
        sgd, predictions, seed + static_cast<std::uint64_t>(step));
    EXPECT_TRUE(result.updated) << "step " << step;
    losses.push_back(result.loss);
  }
  return losses;
}

}  // namespace

TEST(DataParallel, TrainsAnMlpOnOneAndThreeThreads) {
  const nn::MnistSplit data = synthetic_digits();
  std::vector<std::vector<double>> losses;
  for (int threads : {1, 3}) {
    ag::Generator gen(1);
    nn::Mlp model(gen);
    nn::DataParallel parallel(model, nn::factory_of<nn::Mlp>(), threads);
    losses.push_back(train_steps(model, parallel, data, 40));
    const std::vector<double>& l = losses.back();
    // 64 random images with arbitrary labels: learning them means memorising them. Chance is ln 10 = 2.3.
    EXPECT_NEAR(l.front(), std::log(10.0), 0.5) << threads << " threads";
    EXPECT_LT(l.back(), 0.1 * l.front()) << threads << " threads: " << l.front() << " -> " << l.back();
  }
  // The first step's loss is of the same parameters and batch, summed in another order.
  EXPECT_NEAR(losses[0].front(), losses[1].front(), 1e-5);
}

TEST(DataParallel, DropoutRunsRepeatBitForBitForTheSameSeedAndThreads) {
  const nn::MnistSplit data = synthetic_digits();
  const auto run = [&](std::uint64_t seed) {
    ag::Generator gen(1);
    DropoutNet model(gen);
    nn::DataParallel parallel(model, nn::factory_of<DropoutNet>(), 2);
    const std::vector<double> losses = train_steps(model, parallel, data, 6, seed);
    return std::make_pair(losses, values_of(model));
  };
  const auto a = run(100), b = run(100), c = run(200);
  EXPECT_EQ(a.first, b.first);
  EXPECT_EQ(a.second, b.second);
  // Another seed draws other masks: the same initial weights and batches end elsewhere.
  EXPECT_NE(a.first[0], c.first[0]);
  EXPECT_NE(a.second, c.second);
}

TEST(DataParallel, ReplicasShareTheMastersParametersAndBuffers) {
  ag::Generator gen(1);
  DropoutNet master(gen);
  nn::DataParallel parallel(master, nn::factory_of<DropoutNet>(), 3);
  std::mutex mutex;
  std::vector<int> seen;
  parallel.run(3, [&](int shard, nn::Model& model) {
    const auto& replica = dynamic_cast<const DropoutNet&>(model);
    std::lock_guard lock(mutex);
    seen.push_back(shard);
    EXPECT_EQ(&model == &master, shard == 0);
    EXPECT_TRUE(replica.temperature.value().same_storage(master.temperature.value())) << "shard " << shard;
    const auto mine = replica.parameters(), masters = master.parameters();
    for (std::size_t k = 0; k < masters.size(); ++k)
      EXPECT_TRUE(mine[k].value().same_storage(masters[k].value())) << "shard " << shard << " parameter " << k;
  });
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
}

TEST(DataParallel, ReplicasFollowTheMasterIntoEvalModeAndBack) {
  ag::Generator gen(1);
  DropoutNet master(gen);
  master.eval();  // before the replicas exist
  nn::DataParallel parallel(master, nn::factory_of<DropoutNet>(), 3);
  const auto modes = [&] {
    std::mutex mutex;
    std::vector<std::pair<bool, bool>> out(3);  // per shard: the model's mode, its dropout's
    parallel.run(3, [&](int shard, nn::Model& model) {
      const auto& net = dynamic_cast<const DropoutNet&>(model);
      std::lock_guard lock(mutex);
      out[static_cast<std::size_t>(shard)] = {net.is_training(), net.layers[3].is_training()};
    });
    return out;
  };
  const std::vector<std::pair<bool, bool>> evaluating(3, {false, false}), training(3, {true, true});
  EXPECT_EQ(modes(), evaluating);
  master.train();
  EXPECT_EQ(modes(), training);
  master.eval();
  EXPECT_EQ(modes(), evaluating);
}

TEST(DataParallel, SplitsABatchIntoContiguousShardsOfNearlyEqualSize) {
  ag::Generator gen(1);
  nn::LeNet5 model(gen);
  nn::DataParallel parallel(model, nn::factory_of<nn::LeNet5>(), 3);
  EXPECT_EQ(parallel.threads(), 3);
  EXPECT_EQ(parallel.shards(100), 3);
  EXPECT_EQ(parallel.shards(2), 2) << "a batch smaller than the thread count runs on fewer threads";
  const nn::MnistSplit data = synthetic_digits();
  const std::vector<std::int64_t> indices = first_examples(10);
  std::mutex mutex;
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  nn::SGD sgd(model.parameters(), {.lr = 0.01});
  std::vector<std::uint8_t> predictions;
  parallel.step(
      10,
      [&](std::int64_t begin, std::int64_t end, ag::Tensor& images, std::vector<std::int64_t>& targets) {
        {
          std::lock_guard lock(mutex);
          ranges.emplace_back(begin, end);
        }
        nn::fill_batch(images, targets, data,
                       std::span<const std::int64_t>(indices).subspan(static_cast<std::size_t>(begin),
                                                                     static_cast<std::size_t>(end - begin)));
      },
      sgd, predictions);
  std::sort(ranges.begin(), ranges.end());
  EXPECT_EQ(ranges, (std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 3}, {3, 6}, {6, 10}}));
  EXPECT_EQ(predictions.size(), 10u);
}

TEST(DataParallel, TwoThreadsTakeTheSameStepAsOne) {
  // The same model, batch and shifts: two shards' weighted gradients sum to the whole batch's mean
  // gradient, up to float32 rounding in another order. 33 examples: shards of 16 and 17.
  const nn::MnistSplit data = synthetic_digits();
  const std::vector<std::int64_t> indices = first_examples(33);
  Trainer one(data, 1), two(data, 2);
  const auto a = one.step(indices), b = two.step(indices);
  ASSERT_TRUE(a.updated);
  ASSERT_TRUE(b.updated);
  EXPECT_NEAR(a.loss, b.loss, 1e-6 * std::abs(a.loss));
  EXPECT_EQ(one.predictions, two.predictions);
  const auto ga = gradients(one.model), gb = gradients(two.model);
  const auto va = values(one.model), vb = values(two.model);
  for (std::size_t k = 0; k < ga.size(); ++k) {
    double largest = 0;
    for (double g : ga[k]) largest = std::max(largest, std::abs(g));
    ASSERT_GT(largest, 0) << "parameter " << k << " has a gradient";
    for (std::size_t e = 0; e < ga[k].size(); ++e) {
      ASSERT_NEAR(ga[k][e], gb[k][e], 1e-5 * largest) << "parameter " << k << " element " << e;
      ASSERT_NEAR(va[k][e], vb[k][e], 1e-6) << "parameter " << k << " element " << e;
    }
  }
  EXPECT_NE(values(one.model), values(Trainer(data, 1).model)) << "the step moved the parameters";
}

TEST(DataParallel, AFixedThreadCountRepeatsARunBitForBit) {
  const nn::MnistSplit data = synthetic_digits();
  Trainer a(data, 2), b(data, 2);
  for (std::int64_t step = 0; step < 4; ++step) {
    std::vector<std::int64_t> indices = first_examples(20);
    for (auto& i : indices) i = (i + step * 20) % 64;
    const auto ra = a.step(indices), rb = b.step(indices);
    EXPECT_EQ(ra.loss, rb.loss);
  }
  EXPECT_EQ(values(a.model), values(b.model));
}

TEST(DataParallel, ANonFiniteLossLeavesTheParametersUntouched) {
  ag::Generator gen(1);
  nn::LeNet5 model(gen);
  // An infinite logit: log_softmax gives inf - inf, every shard's loss is NaN.
  model.fc3.bias.mutable_value().set(0, std::numeric_limits<double>::infinity());
  nn::DataParallel parallel(model, nn::factory_of<nn::LeNet5>(), 2);
  nn::SGD sgd(model.parameters(), {.lr = 0.1});
  const auto before = values(model);
  const nn::MnistSplit data = synthetic_digits();
  const std::vector<std::int64_t> indices = first_examples(8);
  std::vector<std::uint8_t> predictions;
  const auto result = parallel.step(
      8,
      [&](std::int64_t begin, std::int64_t end, ag::Tensor& images, std::vector<std::int64_t>& targets) {
        nn::fill_batch(images, targets, data,
                       std::span<const std::int64_t>(indices).subspan(static_cast<std::size_t>(begin),
                                                                     static_cast<std::size_t>(end - begin)));
      },
      sgd, predictions);
  EXPECT_FALSE(std::isfinite(result.loss));
  EXPECT_FALSE(result.updated);
  EXPECT_EQ(values(model), before);
  EXPECT_EQ(sgd.steps_taken(), 0);
}

TEST(DataParallel, ErrorsInAShardReachTheCaller) {
  ag::Generator gen(1);
  nn::LeNet5 model(gen);
  nn::DataParallel parallel(model, nn::factory_of<nn::LeNet5>(), 2);
  nn::SGD sgd(model.parameters(), {.lr = 0.1});
  std::vector<std::uint8_t> predictions;
  const auto fill_or_throw = [](std::int64_t begin, std::int64_t end, ag::Tensor& images,
                                std::vector<std::int64_t>& targets) {
    if (begin > 0) throw std::runtime_error("no such example");  // on the worker thread
    images = ag::Tensor({end - begin, 1, 28, 28});
    targets.assign(static_cast<std::size_t>(end - begin), 1);
  };
  EXPECT_THROW(parallel.step(4, fill_or_throw, sgd, predictions), std::runtime_error);
  const auto too_few_targets = [](std::int64_t begin, std::int64_t end, ag::Tensor& images,
                                  std::vector<std::int64_t>& targets) {
    images = ag::Tensor({end - begin, 1, 28, 28});
    targets.assign(1, 1);
  };
  EXPECT_THROW(parallel.step(4, too_few_targets, sgd, predictions), std::invalid_argument);
  EXPECT_THROW(parallel.step(0, too_few_targets, sgd, predictions), std::invalid_argument);
  EXPECT_EQ(sgd.steps_taken(), 0);
  // The threads are still there for the next step.
  const nn::MnistSplit data = synthetic_digits();
  const std::vector<std::int64_t> indices = first_examples(4);
  EXPECT_TRUE(parallel
                  .step(4,
                        [&](std::int64_t begin, std::int64_t end, ag::Tensor& images,
                            std::vector<std::int64_t>& targets) {
                          nn::fill_batch(images, targets, data,
                                         std::span<const std::int64_t>(indices).subspan(
                                             static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin)));
                        },
                        sgd, predictions)
                  .updated);
}

namespace {

// Ranks as threads of this process: what mpirun's processes do, without MPI. allgather is a
// barrier on both sides of the copy, so that no rank overwrites its contribution before every
// rank has read the last one.
class ThreadRanks {
 public:
  explicit ThreadRanks(int size) : size_(size), contributions_(static_cast<std::size_t>(size)), barrier_(size) {}

  class Rank : public nn::Communicator {
   public:
    Rank(ThreadRanks& ranks, int rank) : ranks_(ranks), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return ranks_.size_; }
    int local_size() const override { return ranks_.size_; }
    void allgather(std::span<const std::byte> mine, std::span<std::byte> all) override {
      ranks_.contributions_[static_cast<std::size_t>(rank_)] = mine;
      ranks_.barrier_.arrive_and_wait();
      for (std::size_t r = 0; r < ranks_.contributions_.size(); ++r) {
        const std::span<const std::byte> theirs = ranks_.contributions_[r];
        ASSERT_EQ(theirs.size() * ranks_.contributions_.size(), all.size());
        std::copy(theirs.begin(), theirs.end(), all.begin() + static_cast<std::ptrdiff_t>(r * theirs.size()));
      }
      ranks_.barrier_.arrive_and_wait();
    }
    [[noreturn]] void abort(int) override { std::abort(); }

   private:
    ThreadRanks& ranks_;
    int rank_;
  };

 private:
  int size_;
  std::vector<std::span<const std::byte>> contributions_;
  std::barrier<> barrier_;
};

struct RunResult {
  std::vector<std::vector<double>> parameters;
  std::vector<double> losses;
  std::vector<std::uint8_t> predictions;  // of every step, in batch order
};

// Steps of SGD on DropoutNet in batches of the given sizes (dropout seeded by the step), with
// `ranks` ranks of `threads` threads; returns what rank `report` ends with.
RunResult train_on_ranks(const nn::MnistSplit& data, int ranks, int threads, const std::vector<std::int64_t>& batches,
                         int report = 0) {
  ThreadRanks world(ranks);
  std::vector<RunResult> results(static_cast<std::size_t>(ranks));
  const auto run_rank = [&](int r) {
    ThreadRanks::Rank rank(world, r);
    ag::Generator gen(3);
    DropoutNet model(gen);
    nn::DataParallel parallel(model, nn::factory_of<DropoutNet>(), threads, ranks > 1 ? &rank : nullptr);
    nn::SGD sgd(model.parameters(), {.lr = 0.05, .momentum = 0.9});
    RunResult& result = results[static_cast<std::size_t>(r)];
    std::vector<std::uint8_t> predictions;
    std::int64_t next = 0;
    for (std::size_t step = 0; step < batches.size(); ++step) {
      std::vector<std::int64_t> indices;
      for (std::int64_t i = 0; i < batches[step]; ++i) indices.push_back(next++ % data.count);
      const auto step_result = parallel.step(
          batches[step],
          [&](std::int64_t begin, std::int64_t end, ag::Tensor& images, std::vector<std::int64_t>& targets) {
            nn::fill_batch(images, targets, data,
                           std::span<const std::int64_t>(indices).subspan(static_cast<std::size_t>(begin),
                                                                         static_cast<std::size_t>(end - begin)));
          },
          sgd, predictions, 100 + step);
      EXPECT_TRUE(step_result.updated);
      result.losses.push_back(step_result.loss);
      result.predictions.insert(result.predictions.end(), predictions.begin(), predictions.end());
    }
    result.parameters = values_of(model);
  };
  std::vector<std::thread> rank_threads;
  for (int r = 1; r < ranks; ++r) rank_threads.emplace_back(run_rank, r);
  run_rank(0);
  for (auto& t : rank_threads) t.join();
  return results[static_cast<std::size_t>(report)];
}

}  // namespace

// Batches of 32 and 13 split over 6 shards, and batches of 4 and 1 that leave some ranks without a
// shard: whatever the split, ranks x threads shards give the bits of one process with as many
// threads, on every rank.
TEST(DataParallelRanks, RanksOfThreadsTrainExactlyLikeOneProcessOfAsManyThreads) {
  const nn::MnistSplit data = synthetic_digits();
  const std::vector<std::int64_t> batches{32, 13, 4, 32, 1, 7, 32};
  const RunResult one = train_on_ranks(data, 1, 6, batches);
  for (const auto& [ranks, threads] : {std::pair{2, 3}, {3, 2}, {6, 1}}) {
    for (int report : {0, ranks - 1}) {
      const RunResult spread = train_on_ranks(data, ranks, threads, batches, report);
      EXPECT_EQ(spread.parameters, one.parameters) << ranks << " ranks of " << threads << ", rank " << report;
      EXPECT_EQ(spread.losses, one.losses) << ranks << " ranks of " << threads;
      EXPECT_EQ(spread.predictions, one.predictions) << ranks << " ranks of " << threads;
    }
  }
}

// The comparison above can fail: another number of shards sums the gradient in another order
// (and draws dropout per shard), and ends elsewhere.
TEST(DataParallelRanks, ADifferentShardCountEndsOnOtherWeights) {
  const nn::MnistSplit data = synthetic_digits();
  const std::vector<std::int64_t> batches{32, 13, 32};
  EXPECT_NE(train_on_ranks(data, 2, 2, batches).parameters, train_on_ranks(data, 1, 6, batches).parameters);
  EXPECT_EQ(train_on_ranks(data, 2, 2, batches).parameters, train_on_ranks(data, 1, 4, batches).parameters);
}
