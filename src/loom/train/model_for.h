// The model a `loom train` with these flags would train, built as the Trainer builds it
// (a built-in model shaped by the training set and seeded by --seed, or the TorchScript
// file), with the shape of one sample of the training data: what `loom plan` profiles.
// Loads the training set (DataError as `loom train` would give).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <vector>

#include "loom/models/scripted.h"
#include "loom/train/train_config.h"

namespace loom::train {

struct ModelForConfig {
  torch::nn::Sequential model{nullptr};
  models::ScriptedModel scripted;  // keeps a TorchScript model's module alive
  std::vector<int64_t> sample_shape;
};

ModelForConfig model_for(const TrainConfig& c);

}  // namespace loom::train
