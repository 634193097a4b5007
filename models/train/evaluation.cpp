// Evaluation over a split, shared by train (each epoch's test score) and eval.
#include "models/train/evaluation.hpp"

#include <algorithm>
#include <string>

#include "autograd/file.hpp"
#include "models/data/digit_image.hpp"

namespace nn {

void check_input_fits(const InputSpec& input, const MnistSplit& data) {
  if (input.channels != 1 || input.height != data.rows || input.width != data.cols)
    ag::fail("evaluate", "the model takes [" + std::to_string(input.channels) + ", " + std::to_string(input.height) +
                             ", " + std::to_string(input.width) + "] inputs, the data's images are [1, " +
                             std::to_string(data.rows) + ", " + std::to_string(data.cols) + "]");
}

Evaluation evaluate(DataParallel& parallel, const MnistSplit& data, std::int64_t batch_size) {
  if (batch_size < 1) ag::fail("evaluate", "batch size must be positive");
  const InputSpec& input = parallel.master().input();
  check_input_fits(input, data);
  const BatchOptions options{.mean = input.normalization.mean, .stddev = input.normalization.std};
  const auto classes = static_cast<std::size_t>(parallel.master().classes());
  const std::int64_t batches = (data.count + batch_size - 1) / batch_size;
  std::vector<double> batch_loss(static_cast<std::size_t>(batches));  // summed over the batch
  Evaluation result;
  result.predictions.resize(static_cast<std::size_t>(data.count));
  result.log_probabilities = ag::Tensor::empty({data.count, static_cast<std::int64_t>(classes)});
  const int shards = static_cast<int>(std::clamp<std::int64_t>(batches, 1, parallel.threads()));
  parallel.run(shards, [&](int shard, Model& net) {
    ag::NoGradGuard no_grad;  // grad mode is the thread's own
    const bool was_training = net.is_training();
    net.eval();
    ag::Tensor images;
    std::vector<std::int64_t> targets, indices;
    std::vector<std::uint8_t> predicted;
    for (std::int64_t k = batches * shard / shards; k < batches * (shard + 1) / shards; ++k) {
      const std::int64_t start = k * batch_size, n = std::min(batch_size, data.count - start);
      indices.resize(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) indices[static_cast<std::size_t>(i)] = start + i;
      fill_batch(images, targets, data, indices, options);
      const ag::Variable output = net(ag::Variable(images));
      batch_loss[static_cast<std::size_t>(k)] =
          net.loss(output, targets).value().item() * static_cast<double>(n);
      const ag::Tensor log_probabilities = net.log_probabilities(output).value();
      argmax_rows(log_probabilities, predicted);
      std::copy(predicted.begin(), predicted.end(), result.predictions.begin() + start);
      const ag::Tensor rows = log_probabilities.dtype() == ag::DType::Float32 ? log_probabilities
                                                                             : log_probabilities.to(ag::DType::Float32);
      std::copy_n(rows.data<float>(), rows.numel(), result.log_probabilities.data<float>() + start * rows.size(1));
    }
    net.train(was_training);
  });

  double loss_sum = 0;
  for (const double loss : batch_loss) loss_sum += loss;
  result.confusion.assign(classes, std::vector<std::int64_t>(classes, 0));
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < data.count; ++i) {
    const auto truth = static_cast<std::size_t>(data.labels[static_cast<std::size_t>(i)]);
    if (truth >= classes)
      ag::fail("evaluate", "label " + std::to_string(truth) + " of example " + std::to_string(i) +
                               " is not one of the model's " + std::to_string(classes) + " classes");
    const std::uint8_t predicted = result.predictions[static_cast<std::size_t>(i)];
    ++result.confusion[truth][predicted];
    correct += truth == predicted;
  }
  result.loss = data.count ? loss_sum / static_cast<double>(data.count) : 0;
  result.accuracy = data.count ? static_cast<double>(correct) / static_cast<double>(data.count) : 0;
  return result;
}

}  // namespace nn

namespace nn {

namespace {
std::array<float, 784> digit_pixels(const MnistSplit& data, std::int64_t index) {
  std::array<float, 784> out{};
  const std::uint8_t* src = data.images.data() + index * data.rows * data.cols;
  std::copy(src, src + 784, out.begin());
  return out;
}
}  // namespace

void write_error_grid(const std::string& path, const MnistSplit& data, const Evaluation& result,
                      std::size_t limit) {
  std::vector<std::array<float, 784>> digits;
  std::vector<std::string> captions;
  for (std::int64_t i = 0; i < data.count && digits.size() < limit; ++i) {
    const int truth = data.labels[static_cast<std::size_t>(i)];
    const int predicted = result.predictions[static_cast<std::size_t>(i)];
    if (truth == predicted) continue;
    digits.push_back(digit_pixels(data, i));
    captions.push_back(std::to_string(truth) + ">" + std::to_string(predicted));
  }
  if (digits.empty()) throw std::runtime_error(path + ": no misclassified examples to draw");
  ag::write_file_atomically(path, encode_png(image_grid(digits, captions, 10, 2)));
}

void write_sample_grid(const std::string& path, const MnistSplit& data, std::size_t count) {
  std::vector<std::array<float, 784>> digits;
  std::vector<std::string> captions;
  for (std::int64_t i = 0; i < data.count && digits.size() < count; ++i) {
    digits.push_back(digit_pixels(data, i));
    captions.push_back(std::to_string(data.labels[static_cast<std::size_t>(i)]));
  }
  ag::write_file_atomically(path, encode_png(image_grid(digits, captions, 10, 2)));
}

}  // namespace nn
