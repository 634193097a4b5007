// Saving and loading a Module's parameters, and the normalisation recorded beside them.
#include "models/nn/weights.hpp"

#include <cmath>
#include <cstdlib>

namespace nn {

void save_weights(const Module& model, const std::string& path, const Metadata& metadata) {
  NamedTensors tensors;
  auto add = [&](const std::string& name, const ag::Variable& v) {
    tensors.emplace_back(name, v.dtype() == ag::DType::Float32 ? v.value() : v.value().to(ag::DType::Float32));
  };
  for (const auto& [name, p] : model.named_parameters()) add(name, p);
  for (const auto& [name, b] : model.named_buffers()) add(name, b);
  save_safetensors(path, tensors, metadata);
}

Metadata load_weights(Module& model, const std::string& path, std::string_view model_name) {
  const Safetensors file = load_safetensors(path);
  if (!model_name.empty()) {
    const auto recorded = file.metadata.find("model");
    if (recorded != file.metadata.end() && recorded->second != model_name)
      throw WeightsError(path + ": holds model '" + recorded->second + "', not '" + std::string(model_name) + "'");
  }
  LoadTargets targets;
  NamedParameters parameters = model.named_parameters();
  NamedBuffers buffers = model.named_buffers();
  for (auto& [name, p] : parameters) targets.emplace_back(name, &p.mutable_value());
  for (auto& [name, b] : buffers) targets.emplace_back(name, &b.mutable_value());
  copy_into(file, path, targets);
  Metadata metadata = file.metadata;
  try {
    normalization_from(metadata);  // refuse a file whose recorded normalisation is unusable
  } catch (const WeightsError& e) {
    throw WeightsError(path + ": " + e.what());
  }
  return metadata;
}

namespace {
double number_field(const Metadata& metadata, const std::string& key, double fallback) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) return fallback;
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0' || !std::isfinite(value))
    throw WeightsError("metadata field " + key + " is not a finite number: '" + it->second + "'");
  return value;
}
}  // namespace

Normalization normalization_from(const Metadata& metadata) {
  Normalization n;
  n.mean = number_field(metadata, "normalization_mean", n.mean);
  n.std = number_field(metadata, "normalization_std", n.std);
  if (!(n.std > 0)) throw WeightsError("metadata field normalization_std must be positive");
  return n;
}

void record_normalization(Metadata& metadata, const Normalization& normalization) {
  metadata["normalization_mean"] = std::to_string(normalization.mean);
  metadata["normalization_std"] = std::to_string(normalization.std);
}

}  // namespace nn
