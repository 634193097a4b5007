// Module: the base of every model, in the spirit of torch::nn::Module. Parameters and submodules are
// registered by name in the constructor, so named_parameters() gives deterministic dotted names
// ("conv1.weight") that match PyTorch's state_dict.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.hpp"

namespace nn {

using NamedParameters = std::vector<std::pair<std::string, ag::Variable>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Submodules are registered by address, so a Module stays where it was built.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Own parameters first, then each submodule's under its name, in registration order.
  NamedParameters named_parameters() const;
  std::vector<ag::Variable> parameters() const;
  std::int64_t parameter_count() const;

  void zero_grad();
  /// Training mode (the default) or evaluation mode, for this module and all submodules.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Converts every parameter to `dtype` in place (float64 for gradient checks).
  void to(ag::DType dtype);

 protected:
  /// A new parameter (requires grad) named `name` within this module.
  ag::Variable register_parameter(const std::string& name, ag::Tensor value);
  /// `module` must be a member of this object: it is held by address.
  void register_module(const std::string& name, Module& module);

 private:
  std::vector<std::pair<std::string, ag::Variable>> parameters_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace nn
