// The layers: Conv2d and Linear with parameters, and the parameter-free pools, activations,
// Flatten and Dropout, so that a Sequential can hold a whole network. Options structs take
// designated initializers: Conv2d({.in = 1, .out = 6, .kernel = 5, .padding = 2}, gen).
// Initialisation follows PyTorch's defaults: weights Kaiming-uniform with a = sqrt(5), which is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
#pragma once

#include <cstdint>

#include "autograd/tensor.hpp"
#include "ops/conv2d.hpp"
#include "models/nn/module.hpp"

namespace nn {

struct Conv2dOptions {
  std::int64_t in = 0;       // input channels
  std::int64_t out = 0;      // output channels
  std::int64_t kernel = 0;   // square kernel size
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  bool bias = true;
  ag::ConnectionTable connections = {};  // [out, in]: which inputs each output reads; all by default
};

class Conv2d : public Module {
 public:
  Conv2d(const Conv2dOptions& options, ag::Generator& gen);
  /// x:[N, in, H, W] -> [N, out, Ho, Wo]
  ag::Variable forward(const ag::Variable& x) const override;

  Conv2dOptions options;
  ag::Variable weight;  // [out, in, kernel, kernel], zero off the connection table
  ag::Variable bias;    // [out], undefined without bias
};

struct LinearOptions {
  std::int64_t in = 0;
  std::int64_t out = 0;
  bool bias = true;
};

class Linear : public Module {
 public:
  Linear(const LinearOptions& options, ag::Generator& gen);
  /// x:[N, in] -> [N, out]
  ag::Variable forward(const ag::Variable& x) const override;

  LinearOptions options;
  ag::Variable weight;  // [out, in]
  ag::Variable bias;    // [out], undefined without bias
};

struct Pool2dOptions {
  std::int64_t kernel = 2;
  std::int64_t stride = 0;  // 0: same as kernel
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dOptions& options = {}) : options(options) {}
  ag::Variable forward(const ag::Variable& x) const override;
  Pool2dOptions options;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dOptions& options = {}) : options(options) {}
  ag::Variable forward(const ag::Variable& x) const override;
  Pool2dOptions options;
};

class ReLU : public Module {
 public:
  ag::Variable forward(const ag::Variable& x) const override;
};

class Tanh : public Module {
 public:
  ag::Variable forward(const ag::Variable& x) const override;
};

class Sigmoid : public Module {
 public:
  ag::Variable forward(const ag::Variable& x) const override;
};

/// log_softmax along `dim`.
class LogSoftmax : public Module {
 public:
  explicit LogSoftmax(std::int64_t dim = 1) : dim(dim) {}
  ag::Variable forward(const ag::Variable& x) const override;
  std::int64_t dim;
};

/// [N, C, H, W] -> [N, C*H*W] (all dimensions from start_dim on collapse into one).
class Flatten : public Module {
 public:
  explicit Flatten(std::int64_t start_dim = 1) : start_dim(start_dim) {}
  ag::Variable forward(const ag::Variable& x) const override;
  std::int64_t start_dim;
};

/// In training mode, zeroes each element with probability p and scales the rest by 1 / (1 - p),
/// drawing from ag::current_generator(); in evaluation mode, the identity.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  ag::Variable forward(const ag::Variable& x) const override;
  double p;
};

}  // namespace nn
