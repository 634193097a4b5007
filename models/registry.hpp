// The registry of models by name: every verb of the `lenet` command takes --model NAME and finds
// the model here. A new model is its own file plus one line in registry.cpp (or, in a program of
// its own, one register_model call).
#pragma once

#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/tensor.hpp"
#include "models/model.hpp"
#include "models/train/data_parallel.hpp"
#include "models/train/recipe.hpp"

namespace nn {

struct ModelEntry {
  std::string name;         // what --model takes: "lenet5"
  std::string description;  // one line for `lenet models`
  /// A new model with freshly initialised parameters drawn from `gen`.
  std::unique_ptr<Model> (*make)(ag::Generator& gen) = nullptr;
  Recipe recipe;  // how `lenet train` trains it by default
};

/// A --model name that is not registered; the message lists the registered names.
class UnknownModel : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// The registered models, in registration order (the built-in ones first). Entries stay where they are when
/// more are registered.
const std::deque<ModelEntry>& registered_models();

/// The entry named `name`; throws UnknownModel "unknown model 'x' (registered: lenet5, mlp)".
const ModelEntry& find_model(std::string_view name);

/// Adds a model; throws std::invalid_argument if the name is empty or taken, or make is null.
void register_model(ModelEntry entry);

/// The ModelFactory (for DataParallel's replicas) of a registered model.
ModelFactory factory_of(const ModelEntry& entry);

/// The make function of a ModelEntry for a model constructed from a generator.
template <class M>
std::unique_ptr<Model> make_model(ag::Generator& gen) {
  return std::make_unique<M>(gen);
}

}  // namespace nn
