// Running a trained model over a data split: loss, accuracy, confusion matrix, predictions; and
// the grids of digits that show them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "models/data/mnist.hpp"
#include "models/train/data_parallel.hpp"

namespace nn {

struct Evaluation {
  double loss = 0;       // the model's loss, mean over the split
  double accuracy = 0;   // fraction correct
  std::vector<std::vector<std::int64_t>> confusion;  // [true][predicted], classes x classes
  std::vector<std::uint8_t> predictions;                      // one per example
  ag::Tensor log_probabilities;  // [examples, classes], float32: the model's log_probabilities
};

/// Evaluates the model `parallel` was made for under NoGradGuard, in eval mode, in batches of
/// `batch_size` split over the threads (each runs its replica, which shares the master's weights),
/// with the input normalisation of the model's InputSpec. The result is the same for every thread
/// count: each batch is computed whole by one thread, and the losses are summed in batch order.
/// Throws std::invalid_argument if the split's images are not the model's input size.
Evaluation evaluate(DataParallel& parallel, const MnistSplit& data, std::int64_t batch_size = 1000);

/// Throws std::invalid_argument naming the model's input and the data's image size unless `data`
/// holds the single-channel images of the size `input` takes.
void check_input_fits(const InputSpec& input, const MnistSplit& data);

}  // namespace nn

namespace nn {

/// A PNG grid of the misclassified examples (at most `limit`), each captioned "true>predicted".
void write_error_grid(const std::string& path, const MnistSplit& data, const Evaluation& result,
                      std::size_t limit = 100);

/// A PNG grid of the first `count` examples of `data`, each captioned with its label.
void write_sample_grid(const std::string& path, const MnistSplit& data, std::size_t count = 40);

}  // namespace nn
