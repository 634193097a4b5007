// Optimisers (SGD with momentum/Nesterov/weight decay, Adam) and learning-rate schedules.
// Update rules follow torch.optim exactly, so the same hyper-parameters mean the same thing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.hpp"

namespace nn {

/// The elements of a list of parameters numbered end to end, so that work over all of them (an
/// optimiser update, a gradient sum) can be split into element ranges, one per thread.
class ElementRanges {
 public:
  explicit ElementRanges(const std::vector<ag::Variable>& parameters);
  /// The number of elements of all parameters together.
  std::int64_t numel() const { return offsets_.back(); }
  /// Where parameter i's elements start among all of them.
  std::int64_t offset(std::size_t i) const { return offsets_[i]; }
  /// Calls visit(i, first, last) for each parameter i that holds elements of [begin, end): its own
  /// elements [first, last).
  template <class Visit>
  void for_each_part(std::int64_t begin, std::int64_t end, Visit&& visit) const {
    for (std::size_t i = 0; i + 1 < offsets_.size(); ++i) {
      const std::int64_t first = std::max(begin, offsets_[i]) - offsets_[i];
      const std::int64_t last = std::min(end, offsets_[i + 1]) - offsets_[i];
      if (first < last) visit(i, first, last);
    }
  }

 private:
  std::vector<std::int64_t> offsets_;  // parameter i holds elements [offsets_[i], offsets_[i + 1])
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<ag::Variable> parameters, double lr);
  virtual ~Optimizer() = default;

  /// Updates every parameter that has a gradient, in place, without recording on the tape:
  /// begin_step(), then update(0, numel()).
  void step();
  void zero_grad();

  /// The same step split by element ranges, for threads: begin_step() on one thread (it counts the
  /// step, notes which parameters have a gradient and creates state buffers), then update(begin,
  /// end) over ranges that cover [0, numel()) once, which may run at the same time on different
  /// threads. Elements are numbered through all parameters laid end to end, in the order given to
  /// the constructor. An element's update reads only that element (its value, gradient and state),
  /// so every split gives the result of step() bit for bit.
  virtual void begin_step();
  virtual void update(std::int64_t begin, std::int64_t end) = 0;
  /// The number of elements of all parameters together.
  std::int64_t numel() const { return ranges_.numel(); }

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  std::int64_t steps_taken() const { return steps_; }

  /// The optimiser's state (buffers by name, and the step count), for checkpoints.
  virtual std::vector<std::pair<std::string, ag::Tensor>> state() const = 0;
  virtual void load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state,
                          std::int64_t steps) = 0;

 protected:
  /// Calls visit(i, first, last) for each parameter i that had a gradient at begin_step() and
  /// holds elements of [begin, end): its own elements [first, last).
  template <class Visit>
  void for_each_part(std::int64_t begin, std::int64_t end, Visit&& visit) const {
    ranges_.for_each_part(begin, end, [&](std::size_t i, std::int64_t first, std::int64_t last) {
      if (active_[i]) visit(i, first, last);
    });
  }

  std::vector<ag::Variable> parameters_;
  double lr_;
  std::int64_t steps_ = 0;

 private:
  ElementRanges ranges_;
  std::vector<char> active_;  // had a gradient at begin_step()
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool nesterov = false;
};

/// g = grad + weight_decay * p;  buf = momentum * buf + g (buf = g on the first step);
/// p -= lr * (nesterov ? g + momentum * buf : buf)
class SGD : public Optimizer {
 public:
  SGD(std::vector<ag::Variable> parameters, const SGDOptions& options);
  void begin_step() override;
  void update(std::int64_t begin, std::int64_t end) override;
  std::vector<std::pair<std::string, ag::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state,
                  std::int64_t steps) override;

 private:
  SGDOptions options_;
  std::vector<ag::Tensor> momentum_;  // one per parameter, undefined until first used
  std::vector<char> first_;           // this step creates momentum_[i] (buf = g)
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

/// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr * m^ / (sqrt(v^) + eps),
/// with m^ = m / (1 - b1^t), v^ = v / (1 - b2^t).
class Adam : public Optimizer {
 public:
  Adam(std::vector<ag::Variable> parameters, const AdamOptions& options);
  void begin_step() override;
  void update(std::int64_t begin, std::int64_t end) override;
  std::vector<std::pair<std::string, ag::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state,
                  std::int64_t steps) override;

 private:
  AdamOptions options_;
  std::vector<ag::Tensor> first_moment_, second_moment_;
  double correction1_ = 1, correction2_ = 1;  // 1 - beta^t of this step
};

struct SdlmOptions {
  double lr = 0.0005;  // the global rate eta
  double mu = 0.02;    // keeps the step bounded where the curvature is small
};

/// Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, eq. 21): each parameter gets its
/// own step, p -= lr / (mu + h) * grad, with h the diagonal curvature estimate given to
/// set_curvature() (from ag::backward_with_curvature over a sample of patterns) and kept until the
/// next one. Until the first estimate h is 0.
class SDLM : public Optimizer {
 public:
  SDLM(std::vector<ag::Variable> parameters, const SdlmOptions& options);
  /// One tensor per parameter, of its shape (undefined: that parameter's h stays as it was).
  /// Throws std::invalid_argument naming the parameter for a shape that does not fit or a
  /// negative or non-finite value.
  void set_curvature(const std::vector<ag::Tensor>& curvature);
  const std::vector<ag::Tensor>& curvature() const { return curvature_; }
  void begin_step() override;
  void update(std::int64_t begin, std::int64_t end) override;
  std::vector<std::pair<std::string, ag::Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state,
                  std::int64_t steps) override;

 private:
  SdlmOptions options_;
  std::vector<ag::Tensor> curvature_;  // one per parameter
  std::vector<ag::Tensor> step_sizes_;  // lr / (mu + curvature), per parameter
  double step_sizes_lr_ = -1;           // the rate step_sizes_ was computed for
  bool curvature_changed_ = true;
};

/// Learning rate as a function of the optimisation step (counted from 0), with an optional linear
/// warm-up. Constant; Step: times gamma every step_size steps; Cosine: from base_lr down to
/// min_lr over total_steps, half a cosine period; Piecewise: base_lr times factors[i] from step
/// boundaries[i] on (boundaries ascending, starting at 0).
struct LrSchedule {
  enum class Kind { Constant, Step, Cosine, Piecewise };
  Kind kind = Kind::Constant;
  double base_lr = 0.01;
  std::int64_t total_steps = 1;
  std::int64_t step_size = 1;
  double gamma = 0.1;
  double min_lr = 0.0;
  std::int64_t warmup_steps = 0;
  std::vector<std::int64_t> boundaries = {};  // Piecewise
  std::vector<double> factors = {};           // Piecewise, one per boundary

  double lr_at(std::int64_t step) const;
};

}  // namespace nn
