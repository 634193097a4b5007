// gradcheck: analytic Jacobian by one-hot backward passes, numeric Jacobian by central differences.
#include "autograd/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <sstream>

#include "autograd/engine.hpp"

namespace ag {

namespace {

// The flat indices of `input` to check: all of them, or an evenly spread subset.
std::vector<std::int64_t> elements_to_check(std::int64_t numel, std::int64_t limit) {
  std::vector<std::int64_t> out;
  if (limit <= 0 || limit >= numel) {
    for (std::int64_t k = 0; k < numel; ++k) out.push_back(k);
  } else {
    for (std::int64_t i = 0; i < limit; ++i) out.push_back(i * numel / limit);
  }
  return out;
}

std::string describe(std::size_t input, const Variable& v, std::int64_t element,
                     std::int64_t output_element) {
  std::ostringstream out;
  out << "input " << input;
  if (!v.name().empty()) out << " (" << v.name() << ")";
  out << " of shape " << shape_str(v.shape()) << ", element " << element << ", output element "
      << output_element;
  return out.str();
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFunction& f, const std::vector<Variable>& inputs,
                          const GradcheckOptions& options) {
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].dtype() != DType::Float64)
      fail("gradcheck", "input " + std::to_string(i) + " is " +
                            std::string(dtype_name(inputs[i].dtype())) +
                            "; finite differences need float64");

  std::vector<Variable> checked_inputs;
  std::vector<std::size_t> checked_index;
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].requires_grad()) {
      checked_inputs.push_back(inputs[i]);
      checked_index.push_back(i);
    }
  if (checked_inputs.empty()) fail("gradcheck", "no input requires grad");

  // Leave the callers' gradients as we found them.
  std::vector<Tensor> saved_grads;
  for (auto& v : checked_inputs) saved_grads.push_back(std::exchange(v.mutable_grad(), Tensor{}));
  struct Restore {
    std::vector<Variable>& vars;
    std::vector<Tensor>& grads;
    ~Restore() {
      for (std::size_t i = 0; i < vars.size(); ++i) vars[i].mutable_grad() = grads[i];
    }
  } restore{checked_inputs, saved_grads};

  const Variable output = f(inputs);
  if (output.dtype() != DType::Float64) fail("gradcheck", "the function's output is not float64");
  if (!output.requires_grad()) fail("gradcheck", "the function's output does not require grad");
  const std::int64_t n_out = output.value().numel();

  GradcheckResult result;
  for (std::size_t i = 0; i < checked_inputs.size(); ++i)
    result.inputs.push_back({.input = checked_index[i], .name = checked_inputs[i].name()});
  auto failed = [&](std::string message) {
    result.ok = false;
    result.message = std::move(message);
    return result;
  };

  // Analytic Jacobian, one row per output element: analytic[j][input] = d out[j] / d input.
  std::vector<std::vector<Tensor>> analytic(static_cast<std::size_t>(n_out));
  for (std::int64_t j = 0; j < n_out; ++j) {
    Tensor one_hot = Tensor::zeros(output.shape(), DType::Float64);
    one_hot.set(j, 1.0);
    for (auto& v : checked_inputs) v.mutable_grad() = Tensor{};
    backward(output, one_hot, /*retain_graph=*/true);
    for (auto& v : checked_inputs)
      analytic[static_cast<std::size_t>(j)].push_back(
          v.has_grad() ? v.grad().clone() : Tensor::zeros(v.shape(), DType::Float64));
  }

  // A zero output gradient must give zero input gradients.
  for (auto& v : checked_inputs) v.mutable_grad() = Tensor{};
  backward(output, Tensor::zeros(output.shape(), DType::Float64), /*retain_graph=*/true);
  for (std::size_t i = 0; i < checked_inputs.size(); ++i) {
    const Variable& v = checked_inputs[i];
    if (!v.has_grad()) continue;
    for (std::int64_t k = 0; k < v.value().numel(); ++k)
      if (v.grad().at(k) != 0.0)
        return failed("gradcheck: a zero output gradient gave a nonzero gradient " +
                      std::to_string(v.grad().at(k)) + " at input " +
                      std::to_string(checked_index[i]) + ", element " + std::to_string(k));
  }

  // Numeric Jacobian, one column per input element, compared as it is computed.
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < checked_inputs.size(); ++i) {
    Variable v = checked_inputs[i];
    Tensor& x = v.mutable_value();
    for (std::int64_t k : elements_to_check(x.numel(), options.max_elements_per_input)) {
      const double original = x.at(k);
      x.set(k, original + options.eps);
      const Tensor plus = f(inputs).value().clone();
      x.set(k, original - options.eps);
      const Tensor minus = f(inputs).value().clone();
      x.set(k, original);
      for (std::int64_t j = 0; j < n_out; ++j) {
        const double numeric = (plus.at(j) - minus.at(j)) / (2 * options.eps);
        const double exact = analytic[static_cast<std::size_t>(j)][i].at(k);
        ++result.checked;
        GradcheckInputReport& report = result.inputs[i];
        ++report.checked;
        const double error = std::abs(exact - numeric);
        const double tolerance = options.atol + options.rtol * std::abs(numeric);
        report.worst_error = std::max(report.worst_error, error);
        // A NaN compares false everywhere: make it the worst possible.
        const double ratio = std::isnan(error) ? INFINITY : error / tolerance;
        if (ratio > report.worst_ratio) {
          report.worst_ratio = ratio;
          report.worst_tolerance = tolerance;
        }
        if (!(error <= tolerance) && result.ok) {
          std::ostringstream message;
          message.precision(10);
          message << "gradcheck: Jacobian mismatch at "
                  << describe(checked_index[i], v, k, j) << ": analytic " << exact
                  << " vs numeric " << numeric;
          failed(message.str());
          if (options.stop_at_first_mismatch) return result;
        }
      }
    }
  }
  return result;
}

}  // namespace ag
