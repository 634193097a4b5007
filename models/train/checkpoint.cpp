// Checkpoint files: model and optimiser tensors plus the run's position, in one safetensors file.
#include "models/train/checkpoint.hpp"

#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace nn {

namespace {

constexpr const char* kKind = "lenet-train-checkpoint";
const std::string kConfigPrefix = "config.";

std::int64_t integer_field(const Metadata& metadata, const std::string& key, const std::string& path) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) throw WeightsError(path + ": checkpoint has no " + key);
  char* end = nullptr;
  const long long value = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || value < 0)
    throw WeightsError(path + ": checkpoint field " + key + " is not a count: '" + it->second + "'");
  return value;
}

const std::string& text_field(const Metadata& metadata, const std::string& key, const std::string& path) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) throw WeightsError(path + ": checkpoint has no " + key);
  return it->second;
}

Safetensors read_checkpoint(const std::string& path) {
  Safetensors file = load_safetensors(path);
  const auto kind = file.metadata.find("kind");
  if (kind == file.metadata.end() || kind->second != kKind)
    throw WeightsError(path + ": not a lenet train checkpoint (metadata kind is not " +
                           std::string(kKind) + ")");
  return file;
}

}  // namespace

std::string exact_text(double value) {
  char buffer[32];
  return std::string(buffer, std::to_chars(buffer, buffer + sizeof buffer, value).ptr);
}

void save_checkpoint(const std::string& path, const Module& model, const Optimizer& optimizer,
                     const TrainingPosition& p, const Metadata& config) {
  NamedTensors tensors;
  for (const auto& [name, parameter] : model.named_parameters()) tensors.emplace_back("model." + name, parameter.value());
  for (const auto& [name, buffer] : optimizer.state()) tensors.emplace_back("optimizer." + name, buffer);
  Metadata metadata{{"kind", kKind},
                        {"epoch", std::to_string(p.epoch)},
                        {"iteration", std::to_string(p.iteration)},
                        {"step", std::to_string(p.step)},
                        {"images_seen", std::to_string(p.images_seen)},
                        {"epoch_correct", std::to_string(p.epoch_correct)},
                        {"epoch_seen", std::to_string(p.epoch_seen)},
                        {"interval_loss", exact_text(p.interval_loss)},
                        {"interval_steps", std::to_string(p.interval_steps)},
                        {"epoch_start_rng", p.epoch_start_rng},
                        {"rng", p.rng},
                        {"metrics_csv", p.metrics_csv}};
  for (const auto& [key, value] : config) metadata[kConfigPrefix + key] = value;
  save_safetensors(path, tensors, metadata);
}

Metadata checkpoint_config(const std::string& path) {
  Metadata config;
  for (const auto& [key, value] : read_checkpoint(path).metadata)
    if (key.starts_with(kConfigPrefix)) config[key.substr(kConfigPrefix.size())] = value;
  return config;
}

TrainingPosition load_checkpoint(const std::string& path, Module& model, Optimizer& optimizer) {
  const Safetensors file = read_checkpoint(path);
  LoadTargets targets;
  NamedParameters parameters = model.named_parameters();
  for (auto& [name, parameter] : parameters) targets.emplace_back("model." + name, &parameter.mutable_value());
  // The optimiser's buffers are whatever the file holds under "optimizer."; the model's must fit.
  Safetensors model_part;
  std::vector<std::pair<std::string, ag::Tensor>> optimizer_state;
  for (const auto& [name, tensor] : file.tensors) {
    if (name.starts_with("model.")) model_part.tensors.emplace(name, tensor);
    else if (name.starts_with("optimizer.")) optimizer_state.emplace_back(name.substr(10), tensor);
    else throw WeightsError(path + ": unexpected tensor " + name + " in a checkpoint");
  }
  copy_into(model_part, path, targets);

  TrainingPosition p;
  const Metadata& m = file.metadata;
  p.epoch = integer_field(m, "epoch", path);
  p.iteration = integer_field(m, "iteration", path);
  p.step = integer_field(m, "step", path);
  p.images_seen = integer_field(m, "images_seen", path);
  p.epoch_correct = integer_field(m, "epoch_correct", path);
  p.epoch_seen = integer_field(m, "epoch_seen", path);
  p.interval_steps = integer_field(m, "interval_steps", path);
  try {
    p.interval_loss = std::stod(text_field(m, "interval_loss", path));
  } catch (const std::logic_error&) {
    throw WeightsError(path + ": checkpoint field interval_loss is not a number");
  }
  p.epoch_start_rng = text_field(m, "epoch_start_rng", path);
  p.rng = text_field(m, "rng", path);
  p.metrics_csv = text_field(m, "metrics_csv", path);
  try {
    optimizer.load_state(optimizer_state, p.step);
  } catch (const std::exception& e) {
    throw WeightsError(path + ": " + e.what());
  }
  return p;
}

}  // namespace nn
