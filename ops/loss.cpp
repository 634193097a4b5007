// Loss functions: nll_loss.
#include "ops/loss.hpp"

#include <algorithm>
#include <string>

#include "autograd/allocator.hpp"

namespace ag {

Variable nll_loss(const Variable& logp, std::span<const std::int64_t> targets) {
  if (!logp.defined()) fail("nll_loss", "undefined input");
  if (logp.value().dim() != 2)
    fail("nll_loss", "logp must be [N, C], got " + shape_str(logp.shape()));
  const std::int64_t N = logp.shape()[0], C = logp.shape()[1];
  if (static_cast<std::int64_t>(targets.size()) != N)
    fail("nll_loss", std::to_string(targets.size()) + " targets for logp of shape " +
                         shape_str(logp.shape()) + " (need one per row)");
  if (N == 0) fail("nll_loss", "empty batch: the mean over 0 rows is undefined");
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t target = targets[static_cast<std::size_t>(n)];
    if (target < 0 || target >= C)
      fail("nll_loss", "target " + std::to_string(n) + " is " + std::to_string(target) +
                           ", outside [0, " + std::to_string(C) + ") for logp of shape " +
                           shape_str(logp.shape()));
  }

  const double total = dispatch(logp.dtype(), [&]<class T>() {
    const T* p = logp.value().data<T>();
    double sum = 0;  // in double: a float accumulator would lose digits over a large batch
    for (std::int64_t n = 0; n < N; ++n) sum += p[n * C + targets[static_cast<std::size_t>(n)]];
    return sum;
  });
  Tensor y = Tensor::full({}, -total / static_cast<double>(N), logp.dtype());

  // Saves a copy of the targets (the caller's span may not outlive the graph) and logp's shape.
  std::shared_ptr<std::int64_t[]> saved_targets;
  if (needs_grad({logp})) {
    saved_targets = make_cached_array<std::int64_t>(static_cast<std::size_t>(N));
    std::copy(targets.begin(), targets.end(), saved_targets.get());
  }
  return record(std::move(y), "nll_loss", {logp},
                [saved_targets = std::move(saved_targets), N, C](const Tensor& dy,
                                                                 const GradMask&) {
                  Tensor dlogp({N, C}, dy.dtype());
                  dispatch(dy.dtype(), [&]<class T>() {
                    const T scale = -dy.data<T>()[0] / static_cast<T>(N);
                    T* d = dlogp.data<T>();
                    for (std::int64_t n = 0; n < N; ++n)
                      d[n * C + saved_targets[n]] = scale;
                  });
                  return TensorList{dlogp};
                });
}

}  // namespace ag
