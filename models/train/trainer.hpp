// Training any registered model on an image classification split: data-parallel steps, the
// learning-rate schedule, a test evaluation after every epoch, metrics, checkpoints and exact
// resume, and the guard that stops a run whose loss or gradient stops being finite. The `lenet
// train` command parses options into TrainOptions, prints what the callbacks report and writes
// the files; everything that decides the numbers is here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"
#include "models/data/distort.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/optim.hpp"
#include "models/nn/safetensors.hpp"
#include "models/registry.hpp"
#include "models/train/checkpoint.hpp"
#include "models/train/data_parallel.hpp"
#include "models/train/evaluation.hpp"
#include "models/train/recipe.hpp"

namespace nn {

struct TrainOptions {
  std::string model = "lenet5";  // a registered name
  Recipe recipe;                 // the model's own unless told otherwise
  std::uint64_t seed = 1;        // initialisation, shuffling, augmentation, dropout
  int threads = 1;               // per process
  /// The ranks of a run across processes (communicator.hpp), or null for one process. Every rank
  /// runs a Trainer with the same options; the run is that of one process with ranks x threads
  /// threads, bit for bit. Only rank 0 writes checkpoints.
  Communicator* ranks = nullptr;
  std::int64_t limit = 0;       // use only the first N training examples (0: all)
  std::int64_t log_every = 100;  // steps between step reports
  std::string checkpoint = {};   // written at each epoch's end, every checkpoint_every steps, on stop
  std::int64_t checkpoint_every = 0;
  /// Also evaluate the whole training set after each epoch (the training error of LeCun et al.'s
  /// Fig. 5, rather than the running one of the epoch's batches).
  bool evaluate_training_set = false;
};

/// The options that decide the numbers a run produces, as text that reads back exactly: what a
/// checkpoint records, and what a resumed run takes back. "threads" counts the threads of all
/// ranks: that is what decides the numbers.
Metadata run_defining(const TrainOptions& options);

/// A checkpoint's record with the fields it may lack filled in with the value a run that did not
/// set them has: "model" lenet5, no warm-up, a shuffled order, and the SDLM fields' defaults.
Metadata complete_run_defining(Metadata saved);

/// Sets the run-defining options of `options` from a checkpoint's record (completed as above);
/// `source` names the file in errors. Throws WeightsError if a field is missing or malformed, and
/// TrainOptionError if the record's threads cannot be shared evenly by options.ranks.
void adopt_run_defining(TrainOptions& options, Metadata saved, const std::string& source);

/// An option that cannot be used: out of its range, or not fitting the data or the checkpoint. The
/// message is one line naming the option ("--warmup-steps 20 must be less than ...").
class TrainOptionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Throws TrainOptionError for an option out of its range.
void validate(const TrainOptions& options);

/// Thrown by every rank of a run whose ranks did not start from the same state (a different
/// checkpoint file, data or build on one host). The message names the first rank that differs.
class RanksDisagree : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What the run reports every log_every steps and at the end of each epoch's steps.
struct StepReport {
  std::int64_t epoch = 0, epochs = 0;          // epoch is 0-based
  std::int64_t iteration = 0, steps_per_epoch = 0;  // iteration: steps done in this epoch
  std::int64_t step = 0, total_steps = 0;      // steps done in the run
  double loss = 0;                             // mean over the steps since the last report
  double batch_accuracy = 0, train_accuracy = 0;  // of the last batch, of the epoch so far
  double images_per_second = 0, seconds = 0, seconds_remaining = 0;
  double lr = 0;
};

struct EpochReport {
  std::int64_t epoch = 0, epochs = 0;  // 0-based
  double seconds = 0;                  // since the run (or its resumption) started
  double train_accuracy = 0;  // of the epoch's batches, as they were trained on
  Evaluation test = {};
  Evaluation train_set = {};  // the whole training set after the epoch, with evaluate_training_set
};

struct TrainCallbacks {
  std::function<void(const StepReport&)> on_step;
  std::function<void(const EpochReport&)> on_epoch;
  /// Polled after every step: true stops the run after the step, with a checkpoint when one is set.
  std::function<bool()> should_stop;
};

class Trainer {
 public:
  /// Builds options.model from options.seed, its optimiser and schedule, and the threads. With
  /// `resume`, continues the run saved there (its options must be these: see adopt_run_defining).
  /// Throws TrainOptionError for options that do not fit the data or the checkpoint (a warm-up as
  /// long as the run, a finished run to resume), std::invalid_argument for images of another size
  /// than the model takes, and WeightsError for a checkpoint that cannot be used. Across ranks,
  /// every rank checks that all start from the same options, parameters and optimiser state, and
  /// throws RanksDisagree (on every rank) if not.
  Trainer(const TrainOptions& options, const MnistSplit& train, const MnistSplit& test,
          const std::string& resume = {});
  ~Trainer();

  /// Trains to the end and returns true, or returns false when should_stop asked to stop. Throws
  /// std::runtime_error naming the step when the loss or a gradient is not finite: nothing is
  /// updated with it and the last checkpoint stays as it was.
  bool run(const TrainCallbacks& callbacks = {});

  Model& model() { return *model_; }
  const ModelEntry& entry() const { return entry_; }
  const TrainOptions& options() const { return options_; }
  const TrainingPosition& position() const { return position_; }
  std::int64_t batch_size() const { return batch_; }
  const DataParallel& parallel() const { return *parallel_; }
  std::int64_t steps_per_epoch() const { return steps_per_epoch_; }
  std::int64_t total_steps() const { return steps_per_epoch_ * options_.recipe.epochs; }
  /// The test evaluation after the last epoch run (empty before).
  const Evaluation& last_test() const { return last_test_; }
  /// Every report so far as CSV, header first (resumed runs continue the saved one).
  const std::string& metrics_csv() const { return position_.metrics_csv; }
  /// The metadata a weights file of the trained model gets: the model's name, its test scores,
  /// the run-defining options ("train.<option>") and the input normalisation.
  Metadata weights_metadata() const;

  /// Writes the checkpoint now (nothing without options.checkpoint, or on a rank other than 0).
  void write_checkpoint();

 private:
  // Across ranks: throws RanksDisagree unless every rank holds what rank 0 holds.
  void check_ranks_agree();
  // Sets sdlm's curvature from a curvature pass over the first curvature_samples patterns of
  // `order`.
  void estimate_curvature(SDLM& sdlm, std::span<const std::int64_t> order);
  // Examples `entries` of the training data (pool entries with recipe.distort) as a batch.
  void fill_examples(ag::Tensor& images, std::vector<std::int64_t>& targets,
                     std::span<const std::int64_t> entries, const BatchOptions& options,
                     std::span<const Shift> shifts) const;
  std::int64_t label_of(std::int64_t entry) const;

  TrainOptions options_;
  const ModelEntry& entry_;
  const MnistSplit& train_;
  const MnistSplit& test_;
  std::int64_t examples_ = 0;  // the training examples used: the first `limit`, or all
  std::int64_t batch_ = 0, steps_per_epoch_ = 0;
  ag::Generator generator_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  LrSchedule schedule_;
  TrainingPosition position_;
  std::unique_ptr<DataParallel> parallel_;
  std::unique_ptr<DistortedPool> pool_;  // with recipe.distort
  Evaluation last_test_;
};

}  // namespace nn
