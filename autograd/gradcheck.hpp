// Numerical gradient checking: the analytic gradients from backward against central differences.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.hpp"

namespace ag {

/// torch.autograd.gradcheck's defaults. They only mean something in float64.
struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  /// Check at most this many elements of each input (a fixed, evenly spread subset); 0 = all.
  /// For large inputs such as a whole network's weights, where every element costs two forwards.
  std::int64_t max_elements_per_input = 0;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: which input, element and output, analytic vs numeric
  std::int64_t checked = 0;  // Jacobian entries compared
  explicit operator bool() const { return ok; }
};

using GradcheckFunction = std::function<Variable(const std::vector<Variable>&)>;

/// For every input that requires grad, compares d f(inputs)[j] / d input[k] from backward (one
/// one-hot output gradient per output element j) with (f(x + eps) - f(x - eps)) / 2 eps, requiring
/// |analytic - numeric| <= atol + rtol * |numeric|. Also checks that a zero output gradient gives
/// zero input gradients. Inputs must be float64; they are restored exactly after each nudge, and
/// their .grad is left as it was found.
GradcheckResult gradcheck(const GradcheckFunction& f, const std::vector<Variable>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace ag
