// Module registration and traversal.
#include "models/nn/module.hpp"

namespace nn {

ag::Variable Module::forward(const ag::Variable&) const {
  ag::fail("Module::forward", "this module has no forward of one input");
}

NamedParameters Module::named_parameters() const {
  NamedParameters out = parameters_;
  for (const auto& [child_name, child] : children_)
    for (auto& [name, p] : child->named_parameters()) out.emplace_back(child_name + "." + name, p);
  return out;
}

std::vector<ag::Variable> Module::parameters() const {
  std::vector<ag::Variable> out;
  for (auto& [name, p] : named_parameters()) out.push_back(p);
  return out;
}

std::int64_t Module::parameter_count() const {
  std::int64_t n = 0;
  for (const auto& [name, p] : named_parameters()) n += p.value().numel();
  return n;
}

NamedBuffers Module::named_buffers() const {
  NamedBuffers out = buffers_;
  for (const auto& [child_name, child] : children_)
    for (auto& [name, b] : child->named_buffers()) out.emplace_back(child_name + "." + name, b);
  return out;
}

// Walks the modules instead of calling parameters(), which builds a list: a training step calls
// this, and a step allocates nothing.
void Module::zero_grad() {
  for (auto& [name, p] : parameters_) p.zero_grad();
  for (auto& [name, child] : children_) child->zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(ag::DType dtype) {
  for (auto& p : parameters()) {
    if (p.dtype() == dtype) continue;
    p.mutable_value() = p.value().to(dtype);
    p.mutable_grad() = ag::Tensor{};
  }
  for (auto& [name, b] : named_buffers())
    if (b.dtype() != dtype) b.mutable_value() = b.value().to(dtype);
}

ag::Variable Module::register_parameter(const std::string& name, ag::Tensor value) {
  ag::Variable p(std::move(value), /*requires_grad=*/true, name);
  parameters_.emplace_back(name, p);
  return p;
}

ag::Variable Module::register_buffer(const std::string& name, ag::Tensor value) {
  ag::Variable b(std::move(value), /*requires_grad=*/false, name);
  buffers_.emplace_back(name, b);
  return b;
}

void Module::register_module(const std::string& name, Module& module) {
  children_.emplace_back(name, &module);
  // Parameters and buffers made before registration carry their local name; give them the dotted
  // one (the DOT export shows it).
  for (auto& [local_name, p] : module.named_parameters()) p.set_name(name + "." + local_name);
  for (auto& [local_name, b] : module.named_buffers()) b.set_name(name + "." + local_name);
}

}  // namespace nn
