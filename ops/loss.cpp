// Loss functions: nll_loss, and cross_entropy (log_softmax and nll_loss as one op).
#include "ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>

#include "autograd/allocator.hpp"

namespace ag {

namespace {

// Checks that x (named `x_name` in messages) is [N, C] with N >= 1 and that targets holds N
// class indices in [0, C).
void check_targets(std::string_view op, std::string_view x_name, const Variable& x,
                   std::span<const std::int64_t> targets) {
  if (!x.defined()) fail(op, "undefined input");
  const std::string name(x_name);
  if (x.value().dim() != 2) fail(op, name + " must be [N, C], got " + shape_str(x.shape()));
  const std::int64_t N = x.shape()[0], C = x.shape()[1];
  if (static_cast<std::int64_t>(targets.size()) != N)
    fail(op, std::to_string(targets.size()) + " targets for " + name + " of shape " +
                 shape_str(x.shape()) + " (need one per row)");
  if (N == 0) fail(op, "empty batch: the mean over 0 rows is undefined");
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t target = targets[static_cast<std::size_t>(n)];
    if (target < 0 || target >= C)
      fail(op, "target " + std::to_string(n) + " is " + std::to_string(target) + ", outside [0, " +
                   std::to_string(C) + ") for " + name + " of shape " + shape_str(x.shape()));
  }
}

// A copy of the targets for the backward: the caller's span may not outlive the graph.
std::shared_ptr<std::int64_t[]> copy_targets(std::span<const std::int64_t> targets) {
  auto copy = make_cached_array<std::int64_t>(targets.size());
  std::copy(targets.begin(), targets.end(), copy.get());
  return copy;
}

}  // namespace

Variable nll_loss(const Variable& logp, std::span<const std::int64_t> targets) {
  check_targets("nll_loss", "logp", logp, targets);
  const std::int64_t N = logp.shape()[0], C = logp.shape()[1];

  const double total = dispatch(logp.dtype(), [&]<class T>() {
    const T* p = logp.value().data<T>();
    double sum = 0;  // in double: a float accumulator would lose digits over a large batch
    for (std::int64_t n = 0; n < N; ++n) sum += p[n * C + targets[static_cast<std::size_t>(n)]];
    return sum;
  });
  Tensor y = Tensor::full({}, -total / static_cast<double>(N), logp.dtype());

  // Saves a copy of the targets and logp's shape.
  std::shared_ptr<std::int64_t[]> saved_targets;
  if (needs_grad({logp})) saved_targets = copy_targets(targets);
  return record(std::move(y), "nll_loss", {logp},
                [saved_targets, N, C](const Tensor& dy,
                                                                 const GradMask&) {
                  Tensor dlogp({N, C}, dy.dtype());
                  dispatch(dy.dtype(), [&]<class T>() {
                    const T scale = -dy.data<T>()[0] / static_cast<T>(N);
                    T* d = dlogp.data<T>();
                    for (std::int64_t n = 0; n < N; ++n)
                      d[n * C + saved_targets[n]] = scale;
                  });
                  return TensorList{dlogp};
                },
                // Curvature: dy/dlogp[n, target] = -1/N, squared; y is linear in logp.
                [saved_targets, N, C](const Tensor& h, const Tensor&, const GradMask&) {
                  Tensor hlogp({N, C}, h.dtype());
                  dispatch(h.dtype(), [&]<class T>() {
                    const T scale = h.data<T>()[0] / static_cast<T>(N * N);
                    T* d = hlogp.data<T>();
                    for (std::int64_t n = 0; n < N; ++n) d[n * C + saved_targets[n]] = scale;
                  });
                  return TensorList{hlogp};
                });
}

Variable cross_entropy(const Variable& logits, std::span<const std::int64_t> targets) {
  // logits:[N, C] -> y:[]
  check_targets("cross_entropy", "logits", logits, targets);
  const std::int64_t N = logits.shape()[0], C = logits.shape()[1];

  // Saved for backward, and only when a gradient is wanted: softmax(logits):[N, C], made here and
  // held by nothing else, and a copy of the targets.
  const bool save = needs_grad({logits});
  Tensor probabilities = save ? Tensor::empty({N, C}, logits.dtype()) : Tensor{};
  std::shared_ptr<std::int64_t[]> saved_targets = save ? copy_targets(targets) : nullptr;

  const double total = dispatch(logits.dtype(), [&]<class T>() {
    T* p = save ? probabilities.data<T>() : nullptr;
    double sum = 0;  // in double: a float accumulator would lose digits over a large batch
    for (std::int64_t n = 0; n < N; ++n) {
      const T* row = logits.value().data<T>() + n * C;
      // Subtracting the row's maximum keeps exp() <= 1: no overflow however large the logits.
      const T max = *std::max_element(row, row + C);
      T sum_exp = 0;
      for (std::int64_t c = 0; c < C; ++c) {
        const T e = std::exp(row[c] - max);
        sum_exp += e;
        if (p) p[n * C + c] = e;
      }
      if (p)
        for (std::int64_t c = 0; c < C; ++c) p[n * C + c] /= sum_exp;
      // -log_softmax[n, t] = log(sum_exp) - (logits[n, t] - max)
      const T shifted_target = row[targets[static_cast<std::size_t>(n)]] - max;
      sum += static_cast<double>(std::log(sum_exp)) - static_cast<double>(shifted_target);
    }
    return sum;
  });
  Tensor y = Tensor::full({}, total / static_cast<double>(N), logits.dtype());

  return record(std::move(y), "cross_entropy", {logits},
                [probabilities, saved_targets = std::move(saved_targets), N, C](
                    const Tensor& dy, const GradMask&) {
    // dlogits = (softmax - onehot(targets)) * dy / N
    Tensor grad_logits = Tensor::empty({N, C}, dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      const T scale = dy.data<T>()[0] / static_cast<T>(N);
      const T* p = probabilities.data<T>();
      T* d = grad_logits.data<T>();
      for (std::int64_t i = 0; i < N * C; ++i) d[i] = p[i] * scale;
      for (std::int64_t n = 0; n < N; ++n) d[n * C + saved_targets[n]] -= scale;
    });
    return TensorList{grad_logits};
  });
}

}  // namespace ag
