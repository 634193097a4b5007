// Sequential: registration by position, and the chained forward.
#include "models/nn/sequential.hpp"

namespace nn {

void Sequential::push_back(std::unique_ptr<Module> module) {
  if (!module) ag::fail("Sequential", "cannot append a null module");
  register_module(std::to_string(modules_.size()), *module);
  modules_.push_back(std::move(module));
}

ag::Variable Sequential::forward(const ag::Variable& x) const {
  ag::Variable y = x;
  for (const auto& module : modules_) y = module->forward(y);
  return y;
}

}  // namespace nn
