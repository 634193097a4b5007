// Module: the base of every model, in the spirit of torch::nn::Module. Parameters, buffers and
// submodules are registered by name in the constructor, so named_parameters() and named_buffers()
// give deterministic dotted names ("conv1.weight", "output.centers") that match PyTorch's
// state_dict.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.hpp"

namespace nn {

using NamedParameters = std::vector<std::pair<std::string, ag::Variable>>;
/// Buffers are Variables that never require grad, so that a forward uses them like any operand.
using NamedBuffers = std::vector<std::pair<std::string, ag::Variable>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Submodules are registered by address, so a Module stays where it was built.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// The module's computation on one input. Layers and models override it; a Module without one
  /// (a mere container of parameters) throws naming itself.
  virtual ag::Variable forward(const ag::Variable& x) const;
  ag::Variable operator()(const ag::Variable& x) const { return forward(x); }

  /// Own parameters first, then each submodule's under its name, in registration order.
  NamedParameters named_parameters() const;
  std::vector<ag::Variable> parameters() const;
  /// The number of trainable parameter elements (a model whose parameters hold fixed zeros, such
  /// as a partial connection table, counts only the others).
  virtual std::int64_t parameter_count() const;
  /// Own buffers first, then each submodule's under its name, in registration order.
  NamedBuffers named_buffers() const;

  void zero_grad();
  /// Training mode (the default) or evaluation mode, for this module and all submodules.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Converts every parameter and buffer to `dtype` in place (float64 for gradient checks).
  void to(ag::DType dtype);

 protected:
  /// A new parameter (requires grad) named `name` within this module.
  ag::Variable register_parameter(const std::string& name, ag::Tensor value);
  /// A named constant tensor: saved and loaded with the weights and converted by to(), never
  /// trained (masks, fixed prototypes).
  ag::Variable register_buffer(const std::string& name, ag::Tensor value);
  /// `module` must be a member of this object (or owned by it): it is held by address. Register a
  /// submodule once it holds all of its own parameters; they take their dotted names here.
  void register_module(const std::string& name, Module& module);

 private:
  NamedParameters parameters_;
  NamedBuffers buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace nn
