// The built-in models, one line each, and lookup by name.
#include "models/registry.hpp"

#include "models/lenet1998.hpp"
#include "models/lenet5.hpp"
#include "models/mlp.hpp"

namespace nn {

namespace {

// LeCun et al. 1998, III-C: one update per pattern in a fixed order, 20 passes, stochastic
// diagonal Levenberg-Marquardt with the curvature re-estimated on 500 patterns before each pass,
// the global rate falling pass by pass in the paper's proportions. The first pass's rate is a
// fifth of the paper's 0.0005, which diverges here (docs/lenet1998.md).
const Recipe kLeNet1998Recipe{.epochs = 20, .batch_size = 1, .optimizer = "sdlm", .lr = 0.0001, .momentum = 0,
                              .nesterov = false, .weight_decay = 0, .schedule = "lecun1998", .augment = 0,
                              .order = "fixed", .mu = 0.02, .curvature_samples = 500};

std::deque<ModelEntry>& registry() {
  static std::deque<ModelEntry> models{
      {"lenet5", "LeNet-5 with ReLU and max-pooling, the usual modern form", make_model<LeNet5>, {}},
      {"mlp", "784-300-100-10 tanh network (LeCun et al. 1998: 3.05% test error)", make_model<Mlp>,
       {.lr = 0.05, .augment = 0}},
      {"lenet1998", "LeNet-5 as published in 1998: tanh, trainable subsampling, Table I, RBF output",
       make_model<LeNet1998>, kLeNet1998Recipe},
      {"lenet1998-ml", "lenet1998 trained on the maximum-likelihood criterion (eq. 8) instead of eq. 9",
       [](ag::Generator& gen) -> std::unique_ptr<Model> {
         return std::make_unique<LeNet1998>(gen, Criterion::MaximumLikelihood);
       },
       kLeNet1998Recipe},
  };
  return models;
}

}  // namespace

const std::deque<ModelEntry>& registered_models() { return registry(); }

const ModelEntry& find_model(std::string_view name) {
  std::string names;
  for (const ModelEntry& entry : registry()) {
    if (entry.name == name) return entry;
    names += (names.empty() ? "" : ", ") + entry.name;
  }
  throw UnknownModel("unknown model '" + std::string(name) + "' (registered: " + names + ")");
}

ModelFactory factory_of(const ModelEntry& entry) {
  return [&entry] {
    ag::Generator unused(0);
    return entry.make(unused);
  };
}

void register_model(ModelEntry entry) {
  if (entry.name.empty()) throw std::invalid_argument("register_model: empty name");
  if (entry.make == nullptr) throw std::invalid_argument("register_model: " + entry.name + " has no make function");
  for (const ModelEntry& existing : registry())
    if (existing.name == entry.name)
      throw std::invalid_argument("register_model: a model named " + entry.name + " is already registered");
  registry().push_back(std::move(entry));
}

}  // namespace nn
