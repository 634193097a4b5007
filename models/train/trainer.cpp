// The training loop: epochs of data-parallel steps, reports, test evaluations and checkpoints.
#include "models/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "autograd/engine.hpp"

namespace nn {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void out_of_range(const std::string& option, const std::string& what) {
  throw TrainOptionError("--" + option + " " + what);
}

std::unique_ptr<Optimizer> make_optimizer(const Recipe& r, const std::vector<ag::Variable>& parameters) {
  if (r.optimizer == "sdlm") return std::make_unique<SDLM>(parameters, SdlmOptions{.lr = r.lr, .mu = r.mu});
  if (r.optimizer == "adam")
    return std::make_unique<Adam>(parameters, AdamOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  return std::make_unique<SGD>(parameters, SGDOptions{.lr = r.lr, .momentum = r.momentum,
                                                       .weight_decay = r.weight_decay, .nesterov = r.nesterov});
}

// The first parameter whose gradient is not finite, or "" if all are.
std::string non_finite_gradient(const Model& model) {
  for (const auto& [name, p] : model.named_parameters()) {
    if (!p.has_grad()) continue;
    for (const double g : p.grad().to_vector())
      if (!std::isfinite(g)) return name;
  }
  return {};
}

constexpr const char* kMetricsHeader =
    "kind,epoch,epoch_progress,iteration,step,loss,batch_accuracy,train_accuracy,test_loss,"
    "test_accuracy,lr,images_per_second,seconds,train_set_loss,train_set_accuracy\n";

}  // namespace

Metadata run_defining(const TrainOptions& o) {
  const Recipe& r = o.recipe;
  return {{"model", o.model},
          {"epochs", std::to_string(r.epochs)},       {"batch-size", std::to_string(r.batch_size)},
          {"lr", exact_text(r.lr)},                   {"momentum", exact_text(r.momentum)},
          {"nesterov", r.nesterov ? "1" : "0"},       {"weight-decay", exact_text(r.weight_decay)},
          {"optimizer", r.optimizer},                 {"schedule", r.schedule},
          {"warmup-steps", std::to_string(r.warmup_steps)},
          {"step-epochs", std::to_string(r.step_epochs)}, {"gamma", exact_text(r.gamma)},
          {"augment", std::to_string(r.augment)},     {"seed", std::to_string(o.seed)},
          {"threads", std::to_string(o.threads * (o.ranks ? o.ranks->size() : 1))},
          {"limit", std::to_string(o.limit)},
          {"order", r.order},                         {"mu", exact_text(r.mu)},
          {"curvature-samples", std::to_string(r.curvature_samples)},
          {"distort", r.distort ? "1" : "0"}};
}

Metadata complete_run_defining(Metadata saved) {
  const Metadata defaults = run_defining(TrainOptions{});
  for (const char* key : {"model", "warmup-steps", "order", "mu", "curvature-samples", "distort"})
    saved.try_emplace(key, defaults.at(key));
  return saved;
}

void adopt_run_defining(TrainOptions& o, Metadata saved, const std::string& source) {
  saved = complete_run_defining(std::move(saved));
  auto get = [&](const char* key) -> const std::string& {
    const auto it = saved.find(key);
    if (it == saved.end()) throw WeightsError(source + ": checkpoint has no config." + key);
    return it->second;
  };
  Recipe& r = o.recipe;
  try {
    o.model = get("model");
    r.epochs = std::stoll(get("epochs"));
    r.batch_size = std::stoll(get("batch-size"));
    r.lr = std::stod(get("lr"));
    r.momentum = std::stod(get("momentum"));
    r.nesterov = get("nesterov") == "1";
    r.weight_decay = std::stod(get("weight-decay"));
    r.optimizer = get("optimizer");
    r.schedule = get("schedule");
    r.warmup_steps = std::stoll(get("warmup-steps"));
    r.step_epochs = std::stoll(get("step-epochs"));
    r.gamma = std::stod(get("gamma"));
    r.augment = std::stoi(get("augment"));
    o.seed = std::stoull(get("seed"));
    o.threads = std::stoi(get("threads"));
    if (const int ranks = o.ranks ? o.ranks->size() : 1; ranks > 1) {
      if (o.threads % ranks != 0)
        throw TrainOptionError("--resume " + source + ": its run used " + std::to_string(o.threads) +
                               " threads in all, which " + std::to_string(ranks) + " ranks cannot share evenly");
      o.threads /= ranks;
    }
    o.limit = std::stoll(get("limit"));
    r.order = get("order");
    r.mu = std::stod(get("mu"));
    r.curvature_samples = std::stoll(get("curvature-samples"));
    r.distort = get("distort") == "1";
  } catch (const std::logic_error&) {  // std::stoi and friends
    throw WeightsError(source + ": checkpoint configuration is malformed");
  }
}

void validate(const TrainOptions& o) {
  const Recipe& r = o.recipe;
  if (r.epochs < 1) out_of_range("epochs", "must be positive, got " + std::to_string(r.epochs));
  if (r.batch_size < 1) out_of_range("batch-size", "must be positive, got " + std::to_string(r.batch_size));
  if (!(r.lr > 0)) out_of_range("lr", "must be positive, got " + std::to_string(r.lr));
  if (o.log_every < 1) out_of_range("log-every", "must be positive, got " + std::to_string(o.log_every));
  if (o.threads < 1 || o.threads > 64) out_of_range("threads", "must be in [1, 64]");
  if (o.limit < 0) out_of_range("limit", "must not be negative");
  if (r.warmup_steps < 0) out_of_range("warmup-steps", "must not be negative");
  if (o.checkpoint_every < 0) out_of_range("checkpoint-every", "must not be negative");
  if (r.augment < 0 || r.augment > 8) out_of_range("augment", "must be in [0, 8]");
  if (!(r.momentum >= 0 && r.momentum < 1)) out_of_range("momentum", "must be in [0, 1)");
  if (!(r.weight_decay >= 0)) out_of_range("weight-decay", "must not be negative");
  if (!(r.gamma > 0 && r.gamma <= 1)) out_of_range("gamma", "must be in (0, 1]");
  if (r.step_epochs < 1) out_of_range("step-epochs", "must be positive, got " + std::to_string(r.step_epochs));
  if (r.optimizer != "sgd" && r.optimizer != "adam" && r.optimizer != "sdlm")
    out_of_range("optimizer", "must be sgd, adam or sdlm");
  if (r.schedule != "constant" && r.schedule != "step" && r.schedule != "cosine" && r.schedule != "lecun1998")
    out_of_range("schedule", "must be constant, step, cosine or lecun1998");
  if (r.order != "shuffled" && r.order != "fixed") out_of_range("order", "must be shuffled or fixed");
  if (!(r.mu > 0)) out_of_range("mu", "must be positive");
  if (r.curvature_samples < 1) out_of_range("curvature-samples", "must be positive");
  if (r.distort && r.augment > 0) out_of_range("augment", "must be 0 with --distort (the distortions include shifts)");
}

Trainer::Trainer(const TrainOptions& options, const MnistSplit& train, const MnistSplit& test,
                 const std::string& resume)
    : options_(options), entry_(find_model(options.model)), train_(train), test_(test),
      generator_(options.seed) {
  validate(options_);
  const Recipe& r = options_.recipe;
  examples_ = options_.limit > 0 ? std::min(options_.limit, train.count) : train.count;
  if (examples_ < 1) throw std::invalid_argument("the training split is empty");
  batch_ = std::min(r.batch_size, examples_);
  steps_per_epoch_ = (examples_ + batch_ - 1) / batch_;
  if (r.warmup_steps >= total_steps())
    throw TrainOptionError("--warmup-steps " + std::to_string(r.warmup_steps) + " must be less than the run's " +
                                std::to_string(total_steps()) + " steps (" + std::to_string(r.epochs) +
                                " epochs of " + std::to_string(steps_per_epoch_) + ")");

  if (r.distort) {
    if (examples_ != train.count) throw TrainOptionError("--distort uses the whole training set: no --limit");
    pool_ = std::make_unique<DistortedPool>(train, DistortedPoolOptions{.passes = r.epochs, .seed = options_.seed});
  }
  model_ = entry_.make(generator_);
  check_input_fits(model_->input(), train);
  check_input_fits(model_->input(), test);
  optimizer_ = make_optimizer(r, model_->parameters());
  schedule_ = LrSchedule{.base_lr = r.lr, .total_steps = total_steps(),
                         .step_size = r.step_epochs * steps_per_epoch_, .gamma = r.gamma,
                         .warmup_steps = r.warmup_steps};
  schedule_.kind = r.schedule == "cosine" ? LrSchedule::Kind::Cosine
                   : r.schedule == "step" ? LrSchedule::Kind::Step
                   : r.schedule == "lecun1998" ? LrSchedule::Kind::Piecewise
                                          : LrSchedule::Kind::Constant;
  if (r.schedule == "lecun1998") {
    // LeCun et al. 1998, III-C: eta 0.0005 for passes 1-2, 0.0002 for 3-5, 0.0001 for 6-8,
    // 0.00005 for 9-12, 0.00001 for 13-20; as factors of --lr (0.0005 gives the paper's).
    for (const auto& [epoch, factor] : {std::pair{0, 1.0}, {2, 0.4}, {5, 0.2}, {8, 0.1}, {12, 0.02}}) {
      schedule_.boundaries.push_back(epoch * steps_per_epoch_);
      schedule_.factors.push_back(factor);
    }
  }
  position_.metrics_csv = kMetricsHeader;
  if (!resume.empty()) {
    position_ = load_checkpoint(resume, *model_, *optimizer_);  // in place: the replicas share it
    generator_.set_state(position_.rng);
    if (position_.epoch >= r.epochs) throw TrainOptionError(resume + " is the end of a finished run");
  }
  parallel_ = std::make_unique<DataParallel>(*model_, factory_of(entry_), options_.threads, options_.ranks);
  if (parallel_->ranks() > 1) check_ranks_agree();
}

namespace {

// FNV-1a over bytes, continued from `hash`.
std::uint64_t fnv1a(std::uint64_t hash, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 0x100000001b3ULL;
  return hash;
}

std::uint64_t fnv1a(std::uint64_t hash, const std::string& text) { return fnv1a(hash, text.data(), text.size()); }

std::uint64_t fnv1a(std::uint64_t hash, const ag::Tensor& tensor) {
  return fnv1a(hash, tensor.raw_data(), tensor.nbytes());
}

}  // namespace

void Trainer::check_ranks_agree() {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const auto& [key, value] : run_defining(options_)) hash = fnv1a(fnv1a(hash, key), value);
  for (const auto& [name, p] : model_->named_parameters()) hash = fnv1a(fnv1a(hash, name), p.value());
  for (const auto& [name, b] : model_->named_buffers()) hash = fnv1a(fnv1a(hash, name), b.value());
  for (const auto& [name, t] : optimizer_->state()) hash = fnv1a(fnv1a(hash, name), t);
  hash = fnv1a(hash, position_.rng);
  hash = fnv1a(hash, &position_.step, sizeof position_.step);
  hash = fnv1a(hash, train_.images.data(), train_.images.size());
  hash = fnv1a(hash, train_.labels.data(), train_.labels.size());
  hash = fnv1a(hash, test_.images.data(), test_.images.size());
  hash = fnv1a(hash, test_.labels.data(), test_.labels.size());
  const std::vector<std::uint64_t> hashes = gather_values(*options_.ranks, hash);
  for (std::size_t r = 1; r < hashes.size(); ++r)
    if (hashes[r] != hashes[0])
      throw RanksDisagree("rank " + std::to_string(r) + " starts from other options, parameters, checkpoint or "
                          "data than rank 0 (every rank must be given the same)");
}

Trainer::~Trainer() = default;

void Trainer::write_checkpoint() {
  if (options_.checkpoint.empty() || parallel_->rank() != 0) return;
  position_.rng = generator_.state();
  save_checkpoint(options_.checkpoint, *model_, *optimizer_, position_, run_defining(options_));
}

bool Trainer::run(const TrainCallbacks& callbacks) {
  const Recipe& r = options_.recipe;
  const InputSpec& input = model_->input();
  const BatchOptions batch_options{.mean = input.normalization.mean, .stddev = input.normalization.std,
                                   .max_shift = r.augment};
  const std::int64_t examples = examples_;
  std::vector<Shift> shifts(static_cast<std::size_t>(batch_));
  std::vector<std::uint8_t> predictions;
  const auto start = Clock::now();
  const std::int64_t images_before = position_.images_seen;
  TrainingPosition& p = position_;
  auto failure = [&](const std::string& what, std::int64_t step) {
    return std::runtime_error(what + " at step " + std::to_string(step + 1) + " (epoch " + std::to_string(p.epoch + 1) +
                              "); stopped without saving" +
                              (options_.checkpoint.empty() ? "" : ", last good checkpoint: " + options_.checkpoint) +
                              "; try a lower learning rate");
  };

  for (; p.epoch < r.epochs; ++p.epoch) {
    const std::int64_t epoch = p.epoch;
    // The epoch's order is drawn from the generator's state at its start; a resumed mid-epoch run
    // draws it again from there and then continues from the saved state.
    if (p.iteration == 0) p.epoch_start_rng = generator_.state();
    else generator_.set_state(p.epoch_start_rng);
    std::vector<std::int64_t> order;
    if (pool_) {
      // The pool fixes the order: pass p's entries.
      const auto entries = pool_->pass_entries(epoch);
      order.assign(entries.begin(), entries.end());
    } else if (r.order == "fixed") {
      // One order for the whole run, drawn from the seed alone.
      ag::Generator order_generator(options_.seed ^ 0x5eedf00dULL);
      order = example_order(examples, &order_generator);
    } else {
      order = example_order(examples, &generator_);
    }
    if (p.iteration > 0) generator_.set_state(p.rng);
    // SDLM's curvature, estimated before each epoch and kept through it (a resumed run has it
    // from the checkpoint's optimiser state).
    if (p.iteration == 0)
      if (auto* sdlm = dynamic_cast<SDLM*>(optimizer_.get())) estimate_curvature(*sdlm, order);

    for (; p.iteration < steps_per_epoch_; ++p.iteration) {
      const std::int64_t it = p.iteration, step = p.step;
      const std::int64_t begin = it * batch_, n = std::min(batch_, examples - begin);
      const std::span<const std::int64_t> indices(order.data() + begin, static_cast<std::size_t>(n));
      // The shifts come from the one generator in batch order, whatever the thread count; each
      // shard then fills its own examples on its own thread.
      const std::span<Shift> batch_shifts(shifts.data(), static_cast<std::size_t>(n));
      draw_shifts(batch_shifts, r.augment, generator_);
      const auto fill = [&](std::int64_t lo, std::int64_t hi, ag::Tensor& images, std::vector<std::int64_t>& targets) {
        const auto offset = static_cast<std::size_t>(lo), count = static_cast<std::size_t>(hi - lo);
        fill_examples(images, targets, indices.subspan(offset, count), batch_options,
                      std::span<const Shift>(batch_shifts).subspan(offset, count));
      };
      optimizer_->set_lr(schedule_.lr_at(step));
      // Draws inside the forward (dropout) are seeded by the run's seed and the step alone, so
      // that a resumed run draws them as the uninterrupted one did.
      const std::uint64_t step_seed = options_.seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(step);
      const auto [loss, updated] = parallel_->step(n, fill, *optimizer_, predictions, step_seed);
      // A NaN or Inf stops the run before it reaches the weights; the last checkpoint stays good.
      if (!std::isfinite(loss)) throw failure("loss is " + std::to_string(loss), step);
      if (!updated) throw failure("gradient of " + non_finite_gradient(*model_) + " is not finite", step);
      ++p.step;

      p.interval_loss += loss;
      ++p.interval_steps;
      std::int64_t batch_correct = 0;
      for (std::int64_t i = 0; i < n; ++i)
        batch_correct += predictions[static_cast<std::size_t>(i)] == label_of(indices[static_cast<std::size_t>(i)]);
      p.epoch_correct += batch_correct;
      p.epoch_seen += n;
      p.images_seen += n;

      if (p.step % options_.log_every == 0 || it + 1 == steps_per_epoch_) {
        StepReport report{.epoch = epoch, .epochs = r.epochs, .iteration = it + 1,
                          .steps_per_epoch = steps_per_epoch_, .step = p.step, .total_steps = total_steps()};
        report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
        report.images_per_second = static_cast<double>(p.images_seen - images_before) / report.seconds;
        report.seconds_remaining = static_cast<double>(total_steps() - p.step) * static_cast<double>(batch_) /
                                   report.images_per_second;
        report.batch_accuracy = static_cast<double>(batch_correct) / static_cast<double>(n);
        report.train_accuracy = static_cast<double>(p.epoch_correct) / static_cast<double>(p.epoch_seen);
        report.loss = p.interval_loss / static_cast<double>(p.interval_steps);
        report.lr = optimizer_->lr();
        p.interval_loss = 0;
        p.interval_steps = 0;
        const double progress = static_cast<double>(epoch) + static_cast<double>(it + 1) / static_cast<double>(steps_per_epoch_);
        std::ostringstream row;
        row << "step," << epoch + 1 << ',' << progress << ',' << it + 1 << ',' << p.step << ',' << report.loss << ','
            << report.batch_accuracy << ',' << report.train_accuracy << ",,," << report.lr << ','
            << report.images_per_second << ',' << report.seconds << ",,\n";
        p.metrics_csv += row.str();
        if (callbacks.on_step) callbacks.on_step(report);
      }
      // Across ranks, all stop after the same step when any is asked to.
      bool stop = callbacks.should_stop && callbacks.should_stop();
      if (parallel_->ranks() > 1) stop = any_rank(*options_.ranks, stop);
      if (stop) {
        ++p.iteration;  // this step is done
        write_checkpoint();
        return false;
      }
      if (options_.checkpoint_every > 0 && p.step % options_.checkpoint_every == 0 && it + 1 < steps_per_epoch_) {
        p.iteration = it + 1;
        write_checkpoint();
        p.iteration = it;
      }
    }
    last_test_ = evaluate(*parallel_, test_);
    EpochReport report{.epoch = epoch, .epochs = r.epochs, .test = last_test_};
    if (options_.evaluate_training_set) report.train_set = evaluate(*parallel_, train_);
    report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    report.train_accuracy = static_cast<double>(p.epoch_correct) / static_cast<double>(p.epoch_seen);
    std::ostringstream row;
    row << "epoch," << epoch + 1 << ',' << epoch + 1 << ',' << steps_per_epoch_ << ',' << p.step << ",,,"
        << report.train_accuracy << ',' << last_test_.loss << ',' << last_test_.accuracy << ',' << optimizer_->lr()
        << ',' << static_cast<double>(p.images_seen - images_before) / report.seconds << ',' << report.seconds << ',';
    if (options_.evaluate_training_set) row << report.train_set.loss << ',' << report.train_set.accuracy;
    else row << ',';
    row << '\n';
    p.metrics_csv += row.str();
    if (callbacks.on_epoch) callbacks.on_epoch(report);
    p.iteration = 0;
    p.epoch_correct = p.epoch_seen = 0;
    if (epoch + 1 < r.epochs) {
      ++p.epoch;  // the checkpoint points at the next epoch's start
      write_checkpoint();
      --p.epoch;
    }
  }
  write_checkpoint();  // the finished run's, for the record
  return true;
}

void Trainer::estimate_curvature(SDLM& sdlm, std::span<const std::int64_t> order) {
  const std::int64_t n = std::min<std::int64_t>(options_.recipe.curvature_samples, static_cast<std::int64_t>(order.size()));
  const InputSpec& input = model_->input();
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  fill_examples(images, targets, order.first(static_cast<std::size_t>(n)),
                {.mean = input.normalization.mean, .stddev = input.normalization.std}, {});
  std::vector<ag::Variable> parameters = model_->parameters();
  for (ag::Variable& parameter : parameters) {
    parameter.mutable_grad() = ag::Tensor{};
    parameter.mutable_curvature() = ag::Tensor{};
  }
  {
    // The mean loss over the sample: its curvature is the mean of the patterns' curvatures.
    const ag::CurvatureGuard recording;
    const ag::Variable loss = model_->loss((*model_)(ag::Variable(images)), targets);
    ag::backward_with_curvature(loss);
  }
  std::vector<ag::Tensor> curvature;
  for (ag::Variable& parameter : parameters) {
    curvature.push_back(std::exchange(parameter.mutable_curvature(), ag::Tensor{}));
    parameter.mutable_grad() = ag::Tensor{};
  }
  sdlm.set_curvature(curvature);
}

void Trainer::fill_examples(ag::Tensor& images, std::vector<std::int64_t>& targets,
                            std::span<const std::int64_t> entries, const BatchOptions& options,
                            std::span<const Shift> shifts) const {
  if (pool_) fill_batch(images, targets, *pool_, entries, options);
  else if (shifts.empty()) fill_batch(images, targets, train_, entries, options);
  else fill_batch(images, targets, train_, entries, options, shifts);
}

std::int64_t Trainer::label_of(std::int64_t entry) const {
  return pool_ ? pool_->label(entry) : train_.labels[static_cast<std::size_t>(entry)];
}

Metadata Trainer::weights_metadata() const {
  Metadata metadata{{"model", entry_.name},
                    {"dataset", "MNIST"},
                    {"test_accuracy", std::to_string(last_test_.accuracy)},
                    {"test_loss", std::to_string(last_test_.loss)}};
  for (const auto& [key, value] : run_defining(options_)) metadata["train." + key] = value;
  record_normalization(metadata, model_->input().normalization);
  return metadata;
}

}  // namespace nn
