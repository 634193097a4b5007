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
  /// Stop at the first mismatch (the default), or compare everything so that every input's
  /// worst error is known (a whole-model check reports one line per tensor).
  bool stop_at_first_mismatch = true;
};

/// How one input that requires grad fared: its worst error and the tolerance it was held to there.
struct GradcheckInputReport {
  std::size_t input = 0;  // position among the inputs
  std::string name;       // the Variable's name, if it has one
  std::int64_t checked = 0;
  double worst_error = 0;      // max |analytic - numeric|
  double worst_tolerance = 0;  // atol + rtol * |numeric| where the error / tolerance is largest
  double worst_ratio = 0;      // max |analytic - numeric| / (atol + rtol * |numeric|); > 1 fails
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: which input, element and output, analytic vs numeric
  std::int64_t checked = 0;  // Jacobian entries compared
  std::vector<GradcheckInputReport> inputs;  // one per input that requires grad, in input order
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
