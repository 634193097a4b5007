// Training checkpoints: everything `lenet train --resume` needs to continue a run so that it ends
// with the same weights as an uninterrupted one (same seed and threads). One safetensors file:
// tensors "model.<parameter>" and "optimizer.<buffer>", metadata for the rest.
#pragma once

#include <cstdint>
#include <string>

#include "models/nn/module.hpp"
#include "models/nn/optim.hpp"
#include "models/nn/safetensors.hpp"

namespace nn {

/// Where in the run a checkpoint was taken, and what the progress counters were.
struct TrainingPosition {
  std::int64_t epoch = 0;      // epoch in progress (0-based)
  std::int64_t iteration = 0;  // next step within that epoch
  std::int64_t step = 0;       // optimiser steps taken in all
  std::int64_t images_seen = 0;
  std::int64_t epoch_correct = 0, epoch_seen = 0;
  double interval_loss = 0;  // loss summed over the steps since the last progress line
  std::int64_t interval_steps = 0;
  std::string epoch_start_rng;  // generator state when the epoch's shuffle was drawn
  std::string rng;              // generator state now
  std::string metrics_csv;      // the metrics written so far
};

/// Writes model, optimiser and position atomically; `config` (option name -> value) is stored so a
/// resumed run can refuse contradicting options.
void save_checkpoint(const std::string& path, const Module& model, const Optimizer& optimizer,
                     const TrainingPosition& position, const Metadata& config);

/// Loads into `model` and `optimizer` (built with the checkpoint's configuration); returns the
/// position. Throws WeightsError naming the file for anything that does not fit.
TrainingPosition load_checkpoint(const std::string& path, Module& model, Optimizer& optimizer);

/// The shortest text that reads back as exactly `value`: how checkpoints record numbers.
std::string exact_text(double value);

/// Only the configuration stored in a checkpoint (read before building the optimiser).
Metadata checkpoint_config(const std::string& path);

}  // namespace nn
