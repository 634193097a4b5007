// The layers: parameters, PyTorch's default initialisation, and each layer's forward.
#include "models/nn/layers.hpp"

#include <cmath>
#include <string>

#include "ops/ops.hpp"

namespace nn {

namespace {
// PyTorch's default bound for both weight and bias: 1 / sqrt(fan_in).
ag::Tensor uniform_init(ag::Shape shape, std::int64_t fan_in, ag::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return ag::Tensor::uniform(std::move(shape), -bound, bound, gen);
}

void require_positive(std::string_view layer, std::string_view field, std::int64_t value) {
  if (value <= 0)
    ag::fail(layer, std::string(field) + " must be positive, got " + std::to_string(value));
}
}  // namespace

Conv2d::Conv2d(const Conv2dOptions& opts, ag::Generator& gen) : options(opts) {
  require_positive("Conv2d", "in", opts.in);
  require_positive("Conv2d", "out", opts.out);
  require_positive("Conv2d", "kernel", opts.kernel);
  require_positive("Conv2d", "stride", opts.stride);
  const std::int64_t fan_in = opts.in * opts.kernel * opts.kernel;
  ag::Tensor w = uniform_init({opts.out, opts.in, opts.kernel, opts.kernel}, fan_in, gen);
  if (!opts.connections.all()) {
    if (opts.connections.out_channels() != opts.out || opts.connections.in_channels() != opts.in)
      ag::fail("Conv2d", "connection table of " + std::to_string(opts.connections.out_channels()) +
                             " x " + std::to_string(opts.connections.in_channels()) +
                             " channels does not fit out " + std::to_string(opts.out) +
                             " x in " + std::to_string(opts.in));
    opts.connections.zero_unconnected(w);
  }
  weight = register_parameter("weight", w);
  if (opts.bias) bias = register_parameter("bias", uniform_init({opts.out}, fan_in, gen));
}

ag::Variable Conv2d::forward(const ag::Variable& x) const {
  return ag::conv2d(x, weight, bias, options.connections, options.stride, options.padding);
}

Linear::Linear(const LinearOptions& opts, ag::Generator& gen) : options(opts) {
  require_positive("Linear", "in", opts.in);
  require_positive("Linear", "out", opts.out);
  weight = register_parameter("weight", uniform_init({opts.out, opts.in}, opts.in, gen));
  if (opts.bias) bias = register_parameter("bias", uniform_init({opts.out}, opts.in, gen));
}

ag::Variable Linear::forward(const ag::Variable& x) const { return ag::linear(x, weight, bias); }

ag::Variable MaxPool2d::forward(const ag::Variable& x) const {
  return ag::max_pool2d(x, options.kernel, options.stride);
}

ag::Variable AvgPool2d::forward(const ag::Variable& x) const {
  return ag::avg_pool2d(x, options.kernel, options.stride);
}

ag::Variable ReLU::forward(const ag::Variable& x) const { return ag::relu(x); }
ag::Variable Tanh::forward(const ag::Variable& x) const { return ag::tanh(x); }
ag::Variable Sigmoid::forward(const ag::Variable& x) const { return ag::sigmoid(x); }
ag::Variable LogSoftmax::forward(const ag::Variable& x) const { return ag::log_softmax(x, dim); }
ag::Variable Flatten::forward(const ag::Variable& x) const { return ag::flatten(x, start_dim); }

Dropout::Dropout(double p) : p(p) {
  if (!(p >= 0 && p <= 1)) ag::fail("Dropout", "p must be in [0, 1], got " + std::to_string(p));
}

ag::Variable Dropout::forward(const ag::Variable& x) const {
  return ag::dropout(x, p, is_training(), ag::current_generator());
}

}  // namespace nn
