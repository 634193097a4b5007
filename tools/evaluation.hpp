// Running a trained LeNet-5 over a data split: loss, accuracy, confusion matrix, predictions.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "models/data_parallel.hpp"
#include "models/lenet.hpp"
#include "models/mnist.hpp"
#include "models/weights.hpp"

namespace cli {

struct Evaluation {
  double loss = 0;       // mean nll over the split
  double accuracy = 0;   // fraction correct
  std::array<std::array<std::int64_t, 10>, 10> confusion{};  // [true][predicted]
  std::vector<std::uint8_t> predictions;                      // one per example
};

/// Evaluates the model `parallel` was made for under NoGradGuard, in eval mode, in batches of `batch_size` split
/// over the threads (each runs its replica, which shares the master's weights). The result is the
/// same for every thread count: each batch is computed whole by one thread, and the losses are
/// summed in batch order.
Evaluation evaluate(nn::DataParallel& parallel, const nn::MnistSplit& data,
                    const nn::Normalization& normalization, std::int64_t batch_size = 1000);

/// Index of the largest of each row of logp:[N, 10].
std::vector<std::uint8_t> argmax_rows(const ag::Tensor& logp);

}  // namespace cli

namespace cli {

/// A PNG grid of the misclassified examples (at most `limit`), each captioned "true>predicted".
void write_error_grid(const std::string& path, const nn::MnistSplit& data, const Evaluation& result,
                      std::size_t limit = 100);

/// A PNG grid of the first `count` examples of `data`, each captioned with its label.
void write_sample_grid(const std::string& path, const nn::MnistSplit& data, std::size_t count = 40);

}  // namespace cli
