// A training recipe: the hyper-parameters a model is trained with unless told otherwise. Each
// registered model names its own (models/registry.cpp); `lenet train` takes them as its defaults.
#pragma once

#include <cstdint>
#include <string>

namespace nn {

struct Recipe {
  std::int64_t epochs = 15;
  std::int64_t batch_size = 64;
  std::string optimizer = "sgd";  // sgd, adam or sdlm
  double lr = 0.05;               // peak learning rate
  double momentum = 0.9;          // sgd
  bool nesterov = true;           // sgd
  double weight_decay = 5e-4;     // L2 penalty added to the gradient
  std::string schedule = "cosine";  // constant, step, cosine or lecun1998 (the paper's global rates)
  std::int64_t warmup_steps = 0;  // linear ramp from lr/N to lr over the first N steps (0: none)
  std::int64_t step_epochs = 5;   // schedule step: epochs between decays
  double gamma = 0.1;             // schedule step: decay factor
  int augment = 2;                // random shifts of up to N pixels (0: off)
  std::string order = "shuffled"; // shuffled: a new order every epoch; fixed: one order for all
  double mu = 0.02;               // sdlm: eps_k = lr / (mu + h_kk)
  std::int64_t curvature_samples = 500;  // sdlm: patterns the curvature is estimated on, each epoch
  /// LeCun et al.'s distortion experiment: the training images plus 9 random affine distortions of
  /// each (models/data/distort.hpp), presented as epochs of as many patterns as there are images.
  bool distort = false;
};

}  // namespace nn
