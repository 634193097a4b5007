// Helpers shared by the op tests: float64 variables, value checks, and thrown messages.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"
#include "autograd/variable.hpp"

namespace ag::testing {

/// A float64 Variable holding `values` in row-major order.
inline Variable variable(Shape shape, const std::vector<double>& values, bool requires_grad = true) {
  return Variable(Tensor::from(std::move(shape), values, DType::Float64), requires_grad);
}

/// A float64 Variable of values drawn uniformly from [low, high).
inline Variable random_variable(Shape shape, Generator& gen, bool requires_grad = true, double low = -1,
                                double high = 1) {
  return Variable(Tensor::uniform(std::move(shape), low, high, gen, DType::Float64), requires_grad);
}

/// Expects `actual` to hold exactly `expected`, element by element.
inline void expect_values(const Tensor& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.numel(), static_cast<std::int64_t>(expected.size()));
  const std::vector<double> values = actual.to_vector();
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_DOUBLE_EQ(values[i], expected[i]) << "element " << i;
}
inline void expect_values(const Variable& actual, const std::vector<double>& expected) {
  expect_values(actual.value(), expected);
}
inline void expect_values(const Tensor& actual, const Shape& shape, const std::vector<double>& expected) {
  ASSERT_EQ(actual.shape(), shape);
  expect_values(actual, expected);
}

/// Expects `message` to begin with `prefix` (the part of an error that names op and input).
inline void expect_starts_with(const std::string& message, const std::string& prefix) {
  EXPECT_EQ(message.substr(0, prefix.size()), prefix) << message;
}

/// The message of the std::invalid_argument that f throws, or "(nothing thrown)".
inline std::string thrown_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

}  // namespace ag::testing
