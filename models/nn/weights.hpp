// A model's weights on disk: safetensors with PyTorch's names, plus string metadata (the model's
// name, the input normalisation every tool must apply, the test accuracy measured at training).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "models/nn/module.hpp"
#include "models/nn/safetensors.hpp"

namespace nn {

/// MNIST's mean and standard deviation: x = (pixel / 255 - mean) / std.
struct Normalization {
  double mean = 0.1307;
  double std = 0.3081;
};

/// Writes every parameter and buffer (as float32) and `metadata` atomically: the old file survives
/// a failure. Record the model's registered name as metadata "model" (see load_weights).
void save_weights(const Module& model, const std::string& path, const Metadata& metadata);

/// Loads `path` into `model`'s parameters and buffers (converted to their dtype); throws a
/// one-line WeightsError naming the file if a name is missing or unexpected or a shape differs,
/// and, when `model_name` is given, if the file's metadata "model" names another model:
///   runs/mlp.safetensors: holds model 'mlp', not 'lenet5'
/// Returns the metadata.
Metadata load_weights(Module& model, const std::string& path, std::string_view model_name = {});

/// "normalization_mean" / "normalization_std" from metadata, or MNIST's defaults when absent;
/// throws naming the field if present but not a positive finite number (std) or finite (mean).
Normalization normalization_from(const Metadata& metadata);
/// The metadata fields that record `normalization`.
void record_normalization(Metadata& metadata, const Normalization& normalization);

}  // namespace nn
