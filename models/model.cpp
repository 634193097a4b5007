// Model's defaults: negative log-likelihood over log_softmax, and the argmax of the predictions.
#include "models/model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "ops/loss.hpp"
#include "ops/softmax.hpp"

namespace nn {

Model::Model(const InputSpec& input, std::int64_t classes) : input_(input), classes_(classes) {
  if (input.channels < 1 || input.height < 1 || input.width < 1)
    ag::fail("Model", "input dimensions must be positive");
  // Predicted classes are kept as bytes (a test set's predictions, the confusion matrix).
  if (classes < 2 || classes > 256)
    ag::fail("Model", "classes must be in [2, 256], got " + std::to_string(classes));
}

ag::Shape Model::input_shape(std::int64_t n) const {
  return {n, input_.channels, input_.height, input_.width};
}

ag::Variable Model::loss(const ag::Variable& output, std::span<const std::int64_t> targets) const {
  return ag::nll_loss(log_probabilities(output), targets);
}

ag::Variable Model::log_probabilities(const ag::Variable& output) const {
  return ag::log_softmax(output, 1);
}

std::vector<Prediction> classify(const Model& model, const ag::Tensor& input) {
  if (input.dim() != 4 || input.shape() != model.input_shape(input.size(0)))
    ag::fail("classify", "the model takes input " + ag::shape_str(model.input_shape(1)) + " per batch row, got " +
                             ag::shape_str(input.shape()));
  ag::NoGradGuard no_grad;
  const ag::Tensor log_probabilities = model.log_probabilities(model(ag::Variable(input))).value();
  const std::int64_t count = input.size(0), classes = model.classes();
  std::vector<Prediction> predictions(static_cast<std::size_t>(count));
  for (std::int64_t n = 0; n < count; ++n) {
    Prediction& p = predictions[static_cast<std::size_t>(n)];
    p.probabilities.resize(static_cast<std::size_t>(classes));
    double max_log = -INFINITY, total = 0;
    for (std::int64_t k = 0; k < classes; ++k) max_log = std::max(max_log, log_probabilities.at(n * classes + k));
    for (std::int64_t k = 0; k < classes; ++k) {
      p.probabilities[static_cast<std::size_t>(k)] = std::exp(log_probabilities.at(n * classes + k) - max_log);
      total += p.probabilities[static_cast<std::size_t>(k)];
    }
    for (double& probability : p.probabilities) probability /= total;
    p.digit = static_cast<int>(std::max_element(p.probabilities.begin(), p.probabilities.end()) -
                               p.probabilities.begin());
  }
  return predictions;
}

ModelGradcheck check_model_gradients(Model& model, const ModelGradcheckOptions& options) {
  if (options.examples < 1) ag::fail("check_model_gradients", "examples must be positive");
  model.to(ag::DType::Float64);
  ag::Generator gen(options.seed);
  ag::Variable input(ag::Tensor::normal(model.input_shape(options.examples), 0, 1, gen, ag::DType::Float64),
                     /*requires_grad=*/true, "input");
  std::vector<std::int64_t> targets;
  for (std::int64_t n = 0; n < options.examples; ++n)
    targets.push_back(static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(model.classes()))));
  std::vector<ag::Variable> tensors{input};
  for (const auto& [name, parameter] : model.named_parameters()) tensors.push_back(parameter);
  // Every evaluation draws the same random numbers (dropout's masks), so that the differences
  // see the function the backward differentiates.
  const auto loss = [&](const std::vector<ag::Variable>& in) {
    ag::Generator draws(options.seed);
    const ag::GeneratorScope scope(draws);
    return model.loss(model(in[0]), targets);
  };
  const ag::GradcheckResult result =
      ag::gradcheck(loss, tensors,
                    {.max_elements_per_input = options.elements_per_tensor, .stop_at_first_mismatch = false});
  return {.ok = result.ok, .message = result.message, .tensors = result.inputs};
}

void argmax_rows(const ag::Tensor& scores, std::vector<std::uint8_t>& classes) {
  if (scores.dim() != 2) ag::fail("argmax_rows", "expected scores [N, C], got " + ag::shape_str(scores.shape()));
  const std::int64_t rows = scores.size(0), columns = scores.size(1);
  classes.resize(static_cast<std::size_t>(rows));
  ag::dispatch(scores.dtype(), [&]<class T>() {
    const T* p = scores.data<T>();
    for (std::int64_t i = 0; i < rows; ++i) {
      const T* row = p + i * columns;
      classes[static_cast<std::size_t>(i)] =
          static_cast<std::uint8_t>(std::max_element(row, row + columns) - row);
    }
  });
}

std::vector<std::uint8_t> argmax_rows(const ag::Tensor& scores) {
  std::vector<std::uint8_t> classes;
  argmax_rows(scores, classes);
  return classes;
}

}  // namespace nn
