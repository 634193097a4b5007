// Model: what the training, evaluation, prediction, graph, serving and benchmark code needs to know
// of a network, so that one path serves every registered model (models/registry.hpp). A model is a
// Module whose forward takes a batch of images; it says which images (InputSpec), how many classes
// it tells apart, the criterion it is trained on and how its output becomes log-probabilities.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "models/nn/module.hpp"
#include "models/nn/weights.hpp"

namespace nn {

/// The images a model takes: channels x height x width, each grey level p (0..255, 0 the
/// background) given as (p / 255 - mean) / std.
struct InputSpec {
  std::int64_t channels = 1, height = 28, width = 28;
  Normalization normalization = {};
};

class Model : public Module {
 public:
  explicit Model(const InputSpec& input, std::int64_t classes = 10);

  const InputSpec& input() const { return input_; }
  std::int64_t classes() const { return classes_; }
  /// [n, channels, height, width]: the shape of a batch of n inputs.
  ag::Shape input_shape(std::int64_t n) const;

  /// The criterion training minimises, a scalar: the mean over the batch. By default the negative
  /// log-likelihood of log_probabilities(output).  output: forward's result for N examples;
  /// targets: N class indices.
  virtual ag::Variable loss(const ag::Variable& output, std::span<const std::int64_t> targets) const;

  /// [N, classes] log-probabilities of forward's output; each row's argmax is the predicted class.
  /// By default log_softmax(output, 1); a model whose forward already ends in log_softmax returns
  /// its output.
  virtual ag::Variable log_probabilities(const ag::Variable& output) const;

  /// Connections per example (multiply-adds, each bias one) as LeCun et al. count them; 0 when
  /// the model does not say.
  virtual std::int64_t connections() const { return 0; }

 private:
  InputSpec input_;
  std::int64_t classes_;
};

/// A classification: the most probable class and the probability of every class (they sum to 1).
struct Prediction {
  int digit = 0;
  std::vector<double> probabilities;
};

/// Runs `model` on input:[N, C, H, W] (its input_shape) without recording a graph and returns N
/// predictions, the softmax of its log-probabilities. Put the model in eval mode first. Throws
/// std::invalid_argument naming both shapes if the input is not of the model's shape.
std::vector<Prediction> classify(const Model& model, const ag::Tensor& input);

/// How a model's gradients compare with finite differences: one report per tensor checked, the
/// input first, then every parameter.
struct ModelGradcheck {
  bool ok = true;
  std::string message;  // the first mismatch, when !ok
  std::vector<ag::GradcheckInputReport> tensors;
};

struct ModelGradcheckOptions {
  std::int64_t examples = 3;               // the batch checked
  std::int64_t elements_per_tensor = 40;   // an evenly spread subset of each tensor (0: all)
  std::uint64_t seed = 1;                  // of the inputs and targets
};

/// The float64 gradient check through the whole model and its loss: the model is converted to
/// float64 in place, `examples` random inputs of its input shape and random targets are drawn,
/// and d loss / d tensor from backward is compared with central differences for the input and
/// every parameter (ag::gradcheck's tolerances). Random inputs keep max-pooling and relu away
/// from ties and kinks, which an image's flat background would create. Each forward draws the same
/// random numbers (a GeneratorScope seeded with `seed`), so dropout is checked with a fixed mask.
ModelGradcheck check_model_gradients(Model& model, const ModelGradcheckOptions& options = {});

/// The predicted class of each row of scores:[N, C] (log-probabilities or anything ordered like
/// them): the row's first maximum, as torch.argmax. Writes N entries into `classes`.
void argmax_rows(const ag::Tensor& scores, std::vector<std::uint8_t>& classes);
std::vector<std::uint8_t> argmax_rows(const ag::Tensor& scores);

}  // namespace nn
