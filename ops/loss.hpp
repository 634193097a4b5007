// Loss functions.
#pragma once

#include <cstdint>
#include <span>

#include "autograd/variable.hpp"

namespace ag {

/// Negative log-likelihood, mean over the batch: y = -(1/N) sum_n logp[n, target[n]].
/// d logp[n, c] = -dy / N where c == target[n], else 0.
/// logp:[N, C], N >= 1  targets: N class indices in [0, C) (checked)  -> y:[] (scalar)
/// The recorded node keeps its own copy of the targets: the span may die after the call.
Variable nll_loss(const Variable& logp, std::span<const std::int64_t> targets);

/// Cross-entropy of logits, mean over the batch: nll_loss(log_softmax(logits, 1), targets) as one
/// numerically stable op:  y = (1/N) sum_n (log(sum_c exp(logits[n, c])) - logits[n, target[n]]).
/// d logits[n, c] = (softmax(logits)[n, c] - [c == target[n]]) * dy / N.
/// logits:[N, C], N >= 1  targets: N class indices in [0, C) (checked)  -> y:[] (scalar)
/// The recorded node keeps its own copy of the targets: the span may die after the call.
Variable cross_entropy(const Variable& logits, std::span<const std::int64_t> targets);

}  // namespace ag
