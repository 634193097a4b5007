// SGD, Adam and learning-rate schedules.
#include "models/optim.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace nn {

namespace {
std::string buffer_name(const char* kind, std::size_t index) {
  return std::string(kind) + "." + std::to_string(index);
}

void load_buffers(std::vector<ag::Tensor>& buffers, const char* kind,
                  const std::vector<ag::Variable>& parameters,
                  const std::vector<std::pair<std::string, ag::Tensor>>& state) {
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    buffers[i] = ag::Tensor{};
    for (const auto& [name, tensor] : state)
      if (name == buffer_name(kind, i)) {
        if (tensor.shape() != parameters[i].shape())
          ag::fail("optimizer state", name + " has shape " + ag::shape_str(tensor.shape()) +
                                          ", its parameter " + ag::shape_str(parameters[i].shape()));
        buffers[i] = tensor.to(parameters[i].dtype());
      }
  }
}
}  // namespace

Optimizer::Optimizer(std::vector<ag::Variable> parameters, double lr)
    : parameters_(std::move(parameters)), lr_(lr) {}

void Optimizer::zero_grad() {
  for (auto& p : parameters_) p.zero_grad();
}

SGD::SGD(std::vector<ag::Variable> parameters, const SGDOptions& options)
    : Optimizer(std::move(parameters), options.lr),
      options_(options),
      momentum_(parameters_.size()) {}

void SGD::step() {
  const double momentum = options_.momentum, decay = options_.weight_decay, lr = lr_;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    ag::Variable& p = parameters_[i];
    if (!p.has_grad()) continue;
    ag::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.mutable_value().data<T>();
      const T* grad = p.grad().data<T>();
      const std::int64_t n = p.value().numel();
      const bool first = !momentum_[i].defined();
      if (momentum != 0 && first) momentum_[i] = ag::Tensor(p.shape(), p.dtype());
      T* buf = momentum != 0 ? momentum_[i].data<T>() : nullptr;
      for (std::int64_t k = 0; k < n; ++k) {
        T g = grad[k] + static_cast<T>(decay) * w[k];
        if (buf) {
          buf[k] = first ? g : static_cast<T>(momentum) * buf[k] + g;
          g = options_.nesterov ? g + static_cast<T>(momentum) * buf[k] : buf[k];
        }
        w[k] -= static_cast<T>(lr) * g;
      }
    });
  }
  ++steps_;
}

std::vector<std::pair<std::string, ag::Tensor>> SGD::state() const {
  std::vector<std::pair<std::string, ag::Tensor>> out;
  for (std::size_t i = 0; i < momentum_.size(); ++i)
    if (momentum_[i].defined()) out.emplace_back(buffer_name("momentum", i), momentum_[i]);
  return out;
}

void SGD::load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state,
                     std::int64_t steps) {
  load_buffers(momentum_, "momentum", parameters_, state);
  steps_ = steps;
}

Adam::Adam(std::vector<ag::Variable> parameters, const AdamOptions& options)
    : Optimizer(std::move(parameters), options.lr),
      options_(options),
      first_moment_(parameters_.size()),
      second_moment_(parameters_.size()) {}

void Adam::step() {
  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double correction1 = 1 - std::pow(b1, static_cast<double>(steps_));
  const double correction2 = 1 - std::pow(b2, static_cast<double>(steps_));
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    ag::Variable& p = parameters_[i];
    if (!p.has_grad()) continue;
    if (!first_moment_[i].defined()) {
      first_moment_[i] = ag::Tensor(p.shape(), p.dtype());
      second_moment_[i] = ag::Tensor(p.shape(), p.dtype());
    }
    ag::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.mutable_value().data<T>();
      const T* grad = p.grad().data<T>();
      T* m = first_moment_[i].data<T>();
      T* v = second_moment_[i].data<T>();
      for (std::int64_t k = 0; k < p.value().numel(); ++k) {
        const double g = grad[k] + options_.weight_decay * w[k];
        m[k] = static_cast<T>(b1 * m[k] + (1 - b1) * g);
        v[k] = static_cast<T>(b2 * v[k] + (1 - b2) * g * g);
        const double denom = std::sqrt(v[k] / correction2) + options_.eps;
        w[k] -= static_cast<T>(lr_ * (m[k] / correction1) / denom);
      }
    });
  }
}

std::vector<std::pair<std::string, ag::Tensor>> Adam::state() const {
  std::vector<std::pair<std::string, ag::Tensor>> out;
  for (std::size_t i = 0; i < first_moment_.size(); ++i)
    if (first_moment_[i].defined()) {
      out.emplace_back(buffer_name("exp_avg", i), first_moment_[i]);
      out.emplace_back(buffer_name("exp_avg_sq", i), second_moment_[i]);
    }
  return out;
}

void Adam::load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state,
                      std::int64_t steps) {
  load_buffers(first_moment_, "exp_avg", parameters_, state);
  load_buffers(second_moment_, "exp_avg_sq", parameters_, state);
  steps_ = steps;
}

double LrSchedule::lr_at(std::int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  switch (kind) {
    case Kind::Constant:
      return base_lr;
    case Kind::Step:
      return base_lr * std::pow(gamma, static_cast<double>(step / std::max<std::int64_t>(step_size, 1)));
    case Kind::Cosine: {
      const double span = static_cast<double>(std::max<std::int64_t>(total_steps - warmup_steps, 1));
      const double t = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
      return min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * t));
    }
  }
  return base_lr;
}

}  // namespace nn
