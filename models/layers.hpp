// Layers with parameters (Conv2d, Linear) and the parameter-free MaxPool2d. Options structs take
// designated initializers: Conv2d({.in = 1, .out = 6, .kernel = 5, .padding = 2}, gen).
// Initialisation follows PyTorch's defaults: weights Kaiming-uniform with a = sqrt(5), which is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
#pragma once

#include <cstdint>

#include "autograd/tensor.hpp"
#include "models/module.hpp"

namespace nn {

struct Conv2dOptions {
  std::int64_t in = 0;       // input channels
  std::int64_t out = 0;      // output channels
  std::int64_t kernel = 0;   // square kernel size
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Conv2d(const Conv2dOptions& options, ag::Generator& gen);
  /// x:[N, in, H, W] -> [N, out, Ho, Wo]
  ag::Variable forward(const ag::Variable& x) const;
  ag::Variable operator()(const ag::Variable& x) const { return forward(x); }

  Conv2dOptions options;
  ag::Variable weight;  // [out, in, kernel, kernel]
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
  ag::Variable forward(const ag::Variable& x) const;
  ag::Variable operator()(const ag::Variable& x) const { return forward(x); }

  LinearOptions options;
  ag::Variable weight;  // [out, in]
  ag::Variable bias;    // [out], undefined without bias
};

struct MaxPool2dOptions {
  std::int64_t kernel = 2;
  std::int64_t stride = 0;  // 0: same as kernel
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const MaxPool2dOptions& options) : options(options) {}
  ag::Variable forward(const ag::Variable& x) const;
  ag::Variable operator()(const ag::Variable& x) const { return forward(x); }

  MaxPool2dOptions options;
};

}  // namespace nn
