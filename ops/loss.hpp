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

}  // namespace ag
