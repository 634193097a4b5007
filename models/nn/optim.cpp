// SGD, Adam and learning-rate schedules.
#include "models/nn/optim.hpp"

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

ElementRanges::ElementRanges(const std::vector<ag::Variable>& parameters) : offsets_{0} {
  for (const ag::Variable& p : parameters) offsets_.push_back(offsets_.back() + ag::shape_numel(p.shape()));
}

Optimizer::Optimizer(std::vector<ag::Variable> parameters, double lr)
    : parameters_(std::move(parameters)), lr_(lr), ranges_(parameters_), active_(parameters_.size()) {}

void Optimizer::zero_grad() {
  for (auto& p : parameters_) p.zero_grad();
}

void Optimizer::step() {
  begin_step();
  update(0, numel());
}

void Optimizer::begin_step() {
  ++steps_;
  for (std::size_t i = 0; i < parameters_.size(); ++i) active_[i] = parameters_[i].has_grad();
}

SGD::SGD(std::vector<ag::Variable> parameters, const SGDOptions& options)
    : Optimizer(std::move(parameters), options.lr),
      options_(options),
      momentum_(parameters_.size()),
      first_(parameters_.size()) {}

void SGD::begin_step() {
  Optimizer::begin_step();
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const ag::Variable& p = parameters_[i];
    first_[i] = options_.momentum != 0 && p.has_grad() && !momentum_[i].defined();
    if (first_[i]) momentum_[i] = ag::Tensor(p.shape(), p.dtype());
  }
}

void SGD::update(std::int64_t begin, std::int64_t end) {
  const double momentum = options_.momentum, decay = options_.weight_decay, lr = lr_;
  const bool nesterov = options_.nesterov;
  for_each_part(begin, end, [&](std::size_t i, std::int64_t from, std::int64_t to) {
    ag::Variable& p = parameters_[i];
    ag::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.mutable_value().data<T>();
      const T* grad = p.grad().data<T>();
      T* buf = momentum != 0 ? momentum_[i].data<T>() : nullptr;
      const bool first = first_[i];
      for (std::int64_t k = from; k < to; ++k) {
        T g = grad[k] + static_cast<T>(decay) * w[k];
        if (buf) {
          buf[k] = first ? g : static_cast<T>(momentum) * buf[k] + g;
          g = nesterov ? g + static_cast<T>(momentum) * buf[k] : buf[k];
        }
        w[k] -= static_cast<T>(lr) * g;
      }
    });
  });
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

void Adam::begin_step() {
  Optimizer::begin_step();
  correction1_ = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
  correction2_ = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const ag::Variable& p = parameters_[i];
    if (p.has_grad() && !first_moment_[i].defined()) {
      first_moment_[i] = ag::Tensor(p.shape(), p.dtype());
      second_moment_[i] = ag::Tensor(p.shape(), p.dtype());
    }
  }
}

void Adam::update(std::int64_t begin, std::int64_t end) {
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double correction1 = correction1_, correction2 = correction2_;
  for_each_part(begin, end, [&](std::size_t i, std::int64_t from, std::int64_t to) {
    ag::Variable& p = parameters_[i];
    ag::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.mutable_value().data<T>();
      const T* grad = p.grad().data<T>();
      T* m = first_moment_[i].data<T>();
      T* v = second_moment_[i].data<T>();
      for (std::int64_t k = from; k < to; ++k) {
        const double g = grad[k] + options_.weight_decay * w[k];
        m[k] = static_cast<T>(b1 * m[k] + (1 - b1) * g);
        v[k] = static_cast<T>(b2 * v[k] + (1 - b2) * g * g);
        const double denom = std::sqrt(v[k] / correction2) + options_.eps;
        w[k] -= static_cast<T>(lr_ * (m[k] / correction1) / denom);
      }
    });
  });
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
    case Kind::Piecewise: {
      double factor = 1;
      for (std::size_t i = 0; i < boundaries.size() && i < factors.size(); ++i)
        if (step >= boundaries[i]) factor = factors[i];
      return base_lr * factor;
    }
    case Kind::Cosine: {
      const double span = static_cast<double>(std::max<std::int64_t>(total_steps - warmup_steps, 1));
      const double t = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
      return min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * t));
    }
  }
  return base_lr;
}

SDLM::SDLM(std::vector<ag::Variable> parameters, const SdlmOptions& options)
    : Optimizer(std::move(parameters), options.lr), options_(options), curvature_(parameters_.size()) {
  if (!(options.mu > 0)) ag::fail("SDLM", "mu must be positive, got " + std::to_string(options.mu));
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    curvature_[i] = ag::Tensor(parameters_[i].shape(), parameters_[i].dtype());
}

void SDLM::set_curvature(const std::vector<ag::Tensor>& curvature) {
  if (curvature.size() != parameters_.size())
    ag::fail("SDLM", std::to_string(curvature.size()) + " curvature tensors for " +
                         std::to_string(parameters_.size()) + " parameters");
  for (std::size_t i = 0; i < curvature.size(); ++i) {
    if (!curvature[i].defined()) continue;
    const std::string name = parameters_[i].name().empty() ? "parameter " + std::to_string(i) : parameters_[i].name();
    if (curvature[i].shape() != parameters_[i].shape())
      ag::fail("SDLM", "curvature of shape " + ag::shape_str(curvature[i].shape()) + " for " + name + " " +
                           ag::shape_str(parameters_[i].shape()));
    for (const double h : curvature[i].to_vector())
      if (!(h >= 0 && std::isfinite(h)))
        ag::fail("SDLM", "curvature of " + name + " holds " + std::to_string(h) + " (needs finite, >= 0)");
    curvature_[i] = curvature[i].to(parameters_[i].dtype());
  }
  curvature_changed_ = true;
}

void SDLM::begin_step() {
  Optimizer::begin_step();
  // The steps lr / (mu + h) change only with the rate or the curvature: computed once for both,
  // not once per element and update.
  if (step_sizes_lr_ == lr_ && !curvature_changed_) return;
  step_sizes_.resize(parameters_.size());
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const ag::Tensor& h = curvature_[i];
    if (!step_sizes_[i].defined() || step_sizes_[i].shape() != h.shape() || step_sizes_[i].dtype() != h.dtype())
      step_sizes_[i] = ag::Tensor::empty(h.shape(), h.dtype());
    ag::dispatch(h.dtype(), [&]<class T>() {
      const T* h_data = h.data<T>();
      T* step = step_sizes_[i].data<T>();
      for (std::int64_t k = 0; k < h.numel(); ++k) step[k] = static_cast<T>(lr_ / (options_.mu + h_data[k]));
    });
  }
  step_sizes_lr_ = lr_;
  curvature_changed_ = false;
}

void SDLM::update(std::int64_t begin, std::int64_t end) {
  for_each_part(begin, end, [&](std::size_t i, std::int64_t from, std::int64_t to) {
    ag::Variable& p = parameters_[i];
    ag::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.mutable_value().data<T>();
      const T* grad = p.grad().data<T>();
      const T* step = step_sizes_[i].data<T>();
      for (std::int64_t k = from; k < to; ++k) w[k] -= step[k] * grad[k];
    });
  });
}

std::vector<std::pair<std::string, ag::Tensor>> SDLM::state() const {
  std::vector<std::pair<std::string, ag::Tensor>> out;
  for (std::size_t i = 0; i < curvature_.size(); ++i) out.emplace_back(buffer_name("curvature", i), curvature_[i]);
  return out;
}

void SDLM::load_state(const std::vector<std::pair<std::string, ag::Tensor>>& state, std::int64_t steps) {
  load_buffers(curvature_, "curvature", parameters_, state);
  for (std::size_t i = 0; i < curvature_.size(); ++i)
    if (!curvature_[i].defined()) curvature_[i] = ag::Tensor(parameters_[i].shape(), parameters_[i].dtype());
  curvature_changed_ = true;
  steps_ = steps;
}

}  // namespace nn
