// Sequential: modules applied one after another, named by position as in PyTorch ("0.weight",
// "2.bias"), so a PyTorch nn.Sequential of the same layers loads the same weights file.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/nn/module.hpp"

namespace nn {

class Sequential : public Module {
 public:
  /// Builds a module of type M in place and appends it under the next position:
  ///   layers.emplace_back<Linear>(LinearOptions{.in = 784, .out = 300}, gen);
  template <class M, class... Args>
  M& emplace_back(Args&&... args) {
    auto module = std::make_unique<M>(std::forward<Args>(args)...);
    M& added = *module;
    push_back(std::move(module));
    return added;
  }
  void push_back(std::unique_ptr<Module> module);

  /// x through every module in order.
  ag::Variable forward(const ag::Variable& x) const override;

  std::size_t size() const { return modules_.size(); }
  Module& operator[](std::size_t index) const { return *modules_.at(index); }

 private:
  std::vector<std::unique_ptr<Module>> modules_;
};

}  // namespace nn
