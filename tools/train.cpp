// lenet train: LeNet-5 on MNIST with live progress, per-epoch test scores, weights, metrics, plot,
// crash-safe checkpoints and exact resume.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "autograd/file.hpp"
#include "models/data_parallel.hpp"
#include "models/lenet.hpp"
#include "models/mnist.hpp"
#include "models/optim.hpp"
#include "models/weights.hpp"
#include "ops/loss.hpp"
#include "tools/checkpoint.hpp"
#include "tools/cli.hpp"
#include "tools/evaluation.hpp"
#include "tools/plot.hpp"

namespace cli {

namespace {

using Clock = std::chrono::steady_clock;

// Set by SIGINT/SIGTERM; the loop checks it between steps, saves a checkpoint and stops.
volatile std::sig_atomic_t stop_signal = 0;
extern "C" void request_stop(int signal) { stop_signal = signal; }

struct TrainConfig {
  std::string data = "data/mnist";
  std::int64_t epochs = 15;
  std::int64_t batch_size = 64;
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;
  std::string optimizer = "sgd";
  std::string schedule = "cosine";
  std::int64_t warmup_steps = 0;  // linear ramp from lr/N to lr over the first N steps (0: none)
  std::int64_t step_epochs = 5;   // --schedule step
  double gamma = 0.1;             // --schedule step
  int augment = 2;
  std::uint64_t seed = 1;
  int threads = default_threads();
  std::int64_t limit = 0;
  std::int64_t log_every = 100;
  std::string out = "runs/lenet5.safetensors";
  std::string metrics = "runs/metrics.csv";
  std::string plot = "runs/training.png";
  std::string checkpoint, resume;
  std::int64_t checkpoint_every = 0;
};

// The options that decide the numbers a run produces. A checkpoint records them, and a resumed
// run takes them from there (refusing explicit options that contradict them).
nn::Metadata run_defining(const TrainConfig& c) {
  auto text = [](double v) {  // the shortest text that reads back as exactly v
    char buffer[32];
    return std::string(buffer, std::to_chars(buffer, buffer + sizeof buffer, v).ptr);
  };
  return {{"epochs", std::to_string(c.epochs)},       {"batch-size", std::to_string(c.batch_size)},
          {"lr", text(c.lr)},                         {"momentum", text(c.momentum)},
          {"nesterov", c.nesterov ? "1" : "0"},       {"weight-decay", text(c.weight_decay)},
          {"optimizer", c.optimizer},                 {"schedule", c.schedule},
          {"warmup-steps", std::to_string(c.warmup_steps)},
          {"step-epochs", std::to_string(c.step_epochs)}, {"gamma", text(c.gamma)},
          {"augment", std::to_string(c.augment)},     {"seed", std::to_string(c.seed)},
          {"threads", std::to_string(c.threads)},     {"limit", std::to_string(c.limit)}};
}

void adopt_checkpoint_config(TrainConfig& c, nn::Metadata saved, const po::variables_map& vm) {
  // Checkpoints written before --warmup-steps existed had none.
  saved.try_emplace("warmup-steps", "0");
  const nn::Metadata mine = run_defining(c);
  for (const auto& [key, value] : saved) {
    const auto it = mine.find(key);
    if (it == mine.end()) continue;
    const bool explicit_option = key == "nesterov" ? vm.count("no-nesterov") > 0
                                                   : vm.count(key) && !vm[key].defaulted();
    if (explicit_option && it->second != value)
      throw UsageError("--" + key + " " + it->second + " contradicts the checkpoint's " + value +
                       " (a resumed run keeps its settings)");
  }
  auto get = [&](const char* key) -> const std::string& {
    const auto it = saved.find(key);
    if (it == saved.end()) throw nn::WeightsError(c.resume + ": checkpoint has no config." + key);
    return it->second;
  };
  try {
    c.epochs = std::stoll(get("epochs"));
    c.batch_size = std::stoll(get("batch-size"));
    c.lr = std::stod(get("lr"));
    c.momentum = std::stod(get("momentum"));
    c.nesterov = get("nesterov") == "1";
    c.weight_decay = std::stod(get("weight-decay"));
    c.optimizer = get("optimizer");
    c.schedule = get("schedule");
    c.warmup_steps = std::stoll(get("warmup-steps"));
    c.step_epochs = std::stoll(get("step-epochs"));
    c.gamma = std::stod(get("gamma"));
    c.augment = std::stoi(get("augment"));
    c.seed = std::stoull(get("seed"));
    c.threads = std::stoi(get("threads"));
    c.limit = std::stoll(get("limit"));
  } catch (const std::logic_error&) {  // std::stoi and friends
    throw nn::WeightsError(c.resume + ": checkpoint configuration is malformed");
  }
}

void validate(const TrainConfig& c) {
  require_positive("epochs", static_cast<double>(c.epochs));
  require_positive("batch-size", static_cast<double>(c.batch_size));
  require_positive("lr", c.lr);
  require_positive("log-every", static_cast<double>(c.log_every));
  require_thread_count(c.threads);
  if (c.limit < 0) throw UsageError("--limit must not be negative");
  if (c.warmup_steps < 0) throw UsageError("--warmup-steps must not be negative");
  if (c.checkpoint_every < 0) throw UsageError("--checkpoint-every must not be negative");
  if (c.augment < 0 || c.augment > 8) throw UsageError("--augment must be in [0, 8]");
  if (!(c.momentum >= 0 && c.momentum < 1)) throw UsageError("--momentum must be in [0, 1)");
  if (!(c.weight_decay >= 0)) throw UsageError("--weight-decay must not be negative");
  if (!(c.gamma > 0 && c.gamma <= 1)) throw UsageError("--gamma must be in (0, 1]");
  require_positive("step-epochs", static_cast<double>(c.step_epochs));
  if (c.optimizer != "sgd" && c.optimizer != "adam") throw UsageError("--optimizer must be sgd or adam");
  if (c.schedule != "constant" && c.schedule != "step" && c.schedule != "cosine")
    throw UsageError("--schedule must be constant, step or cosine");
  if (c.out.empty()) throw UsageError("--out must name a file");
}

std::string hms(double seconds) {
  const auto s = static_cast<long>(std::max(0.0, seconds) + 0.5);
  std::ostringstream out;
  out << std::setfill('0');
  if (s >= 3600) out << s / 3600 << "h" << std::setw(2) << (s % 3600) / 60 << "m";
  else out << s / 60 << "m" << std::setw(2) << s % 60 << "s";
  return out.str();
}

/// The first parameter whose gradient is not finite, or "" if all are.
std::string non_finite_gradient(const nn::LeNet5& model) {
  for (const auto& [name, p] : model.named_parameters()) {
    const float* g = p.grad().data<float>();
    for (std::int64_t i = 0; i < p.value().numel(); ++i)
      if (!std::isfinite(g[i])) return name;
  }
  return {};
}

void ensure_parent_directory(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
}

std::string command_line(const std::vector<std::string>& args) {
  std::string out = "lenet train";
  for (const auto& a : args) out += " " + a;
  return out;
}

}  // namespace

int train(const std::vector<std::string>& args) {
  TrainConfig c;
  po::options_description options("options");
  options.add_options()
      ("data", po::value(&c.data)->default_value(c.data), "directory with the MNIST IDX files")
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "passes over the training set")
      ("batch-size", po::value(&c.batch_size)->default_value(c.batch_size), "examples per step")
      ("lr", po::value(&c.lr)->default_value(c.lr), "peak learning rate")
      ("momentum", po::value(&c.momentum)->default_value(c.momentum), "SGD momentum (0 for none)")
      ("no-nesterov", "plain momentum instead of Nesterov's")
      ("weight-decay", po::value(&c.weight_decay)->default_value(c.weight_decay), "L2 penalty")
      ("optimizer", po::value(&c.optimizer)->default_value(c.optimizer), "sgd or adam")
      ("schedule", po::value(&c.schedule)->default_value(c.schedule), "constant, step or cosine")
      ("warmup-steps", po::value(&c.warmup_steps)->default_value(c.warmup_steps),
       "lr rises linearly to --lr over the first N steps (0: none)")
      ("step-epochs", po::value(&c.step_epochs)->default_value(c.step_epochs), "--schedule step: epochs between decays")
      ("gamma", po::value(&c.gamma)->default_value(c.gamma), "--schedule step: decay factor")
      ("augment", po::value(&c.augment)->default_value(c.augment), "random shifts of up to N pixels (0: off)")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed of initialisation, shuffling and augmentation")
      ("threads", po::value(&c.threads)->default_value(c.threads), "data-parallel worker threads")
      ("limit", po::value(&c.limit)->default_value(c.limit), "use only the first N training images (0: all)")
      ("log-every", po::value(&c.log_every)->default_value(c.log_every), "steps between progress lines")
      ("out", po::value(&c.out)->default_value(c.out), "weights file to write (safetensors)")
      ("metrics", po::value(&c.metrics)->default_value(c.metrics), "metrics CSV to write ('' for none)")
      ("plot", po::value(&c.plot)->default_value(c.plot), "PNG plot of the curves to write ('' for none)")
      ("checkpoint", po::value(&c.checkpoint), "write a checkpoint here at each epoch end and on SIGINT/SIGTERM")
      ("checkpoint-every", po::value(&c.checkpoint_every)->default_value(0), "also every N steps (0: epoch ends only)")
      ("resume", po::value(&c.resume), "continue the run saved in this checkpoint");
  po::variables_map vm;
  if (!parse("train", "[OPTIONS]", options, args, vm)) return 0;
  c.nesterov = vm.count("no-nesterov") == 0;
  if (!c.resume.empty()) adopt_checkpoint_config(c, checkpoint_config(c.resume), vm);
  validate(c);
  c.data = resolve_path(vm, "data", kFetchMnistHint);

  nn::MnistSplit train_set = nn::load_mnist(c.data, nn::Split::Train);
  const nn::MnistSplit test_set = nn::load_mnist(c.data, nn::Split::Test);
  if (c.limit > 0 && c.limit < train_set.count) {
    train_set.count = c.limit;
    train_set.images.resize(static_cast<std::size_t>(c.limit * train_set.rows * train_set.cols));
    train_set.labels.resize(static_cast<std::size_t>(c.limit));
  }
  const std::int64_t batch = std::min(c.batch_size, train_set.count);
  const std::int64_t steps_per_epoch = (train_set.count + batch - 1) / batch;
  const std::int64_t total_steps = steps_per_epoch * c.epochs;
  if (c.warmup_steps >= total_steps)
    throw UsageError("--warmup-steps " + std::to_string(c.warmup_steps) + " must be less than the run's " +
                     std::to_string(total_steps) + " steps (" + std::to_string(c.epochs) + " epochs of " +
                     std::to_string(steps_per_epoch) + ")");

  ag::Generator gen(c.seed);
  nn::LeNet5 model(gen);
  std::unique_ptr<nn::Optimizer> optimizer;
  if (c.optimizer == "adam")
    optimizer = std::make_unique<nn::Adam>(model.parameters(), nn::AdamOptions{.lr = c.lr, .weight_decay = c.weight_decay});
  else
    optimizer = std::make_unique<nn::SGD>(
        model.parameters(),
        nn::SGDOptions{.lr = c.lr, .momentum = c.momentum, .weight_decay = c.weight_decay, .nesterov = c.nesterov});
  nn::LrSchedule schedule{.base_lr = c.lr, .total_steps = total_steps,
                          .step_size = c.step_epochs * steps_per_epoch, .gamma = c.gamma,
                          .warmup_steps = c.warmup_steps};
  schedule.kind = c.schedule == "cosine" ? nn::LrSchedule::Kind::Cosine
                  : c.schedule == "step" ? nn::LrSchedule::Kind::Step
                                         : nn::LrSchedule::Kind::Constant;

  TrainingPosition position;
  position.metrics_csv =
      "kind,epoch,epoch_progress,iteration,step,loss,batch_accuracy,train_accuracy,test_loss,"
      "test_accuracy,lr,images_per_second,seconds\n";
  if (!c.resume.empty()) {
    position = load_checkpoint(c.resume, model, *optimizer);  // in place: replicas below share it
    gen.set_state(position.rng);
    if (position.epoch >= c.epochs) throw UsageError(c.resume + " is the end of a finished run");
  }
  nn::DataParallel parallel(model, c.threads);

  const nn::Normalization normalization;
  const nn::BatchOptions batch_options{.mean = normalization.mean, .stddev = normalization.std, .max_shift = c.augment};
  const bool interactive = ::isatty(STDOUT_FILENO);
  std::cout << "lenet train: seed " << c.seed << ", " << c.threads << " thread(s), " << train_set.count
            << " training and " << test_set.count << " test images, " << c.epochs << " epochs of "
            << steps_per_epoch << " steps (batch " << batch << "), " << c.optimizer << " lr " << c.lr << " "
            << c.schedule;
  if (c.warmup_steps > 0) std::cout << " after " << c.warmup_steps << " warm-up steps";
  std::cout << ", " << model.parameter_count() << " parameters";
  if (!c.resume.empty())
    std::cout << "; resuming " << c.resume << " at epoch " << position.epoch + 1 << " step " << position.step;
  std::cout << '\n' << std::flush;

  ensure_parent_directory(c.out);
  if (!c.checkpoint.empty()) ensure_parent_directory(c.checkpoint);
  const nn::Metadata config = run_defining(c);
  auto write_checkpoint = [&] {
    if (c.checkpoint.empty()) return;
    position.rng = gen.state();
    save_checkpoint(c.checkpoint, model, *optimizer, position, config);
  };
  stop_signal = 0;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);

  std::vector<nn::Shift> shifts(static_cast<std::size_t>(batch));
  std::vector<std::uint8_t> predictions;
  const auto start = Clock::now();
  const std::int64_t images_before = position.images_seen;
  Evaluation last_test;

  for (; position.epoch < c.epochs; ++position.epoch) {
    const std::int64_t epoch = position.epoch;
    // The epoch's order is drawn from the generator's state at its start; a resumed mid-epoch run
    // draws it again from there and then continues from the saved state.
    if (position.iteration == 0) position.epoch_start_rng = gen.state();
    else gen.set_state(position.epoch_start_rng);
    std::vector<std::int64_t> order = nn::example_order(train_set.count, &gen);
    if (position.iteration > 0) gen.set_state(position.rng);

    for (; position.iteration < steps_per_epoch; ++position.iteration) {
      const std::int64_t it = position.iteration, step = position.step;
      const std::int64_t begin = it * batch, n = std::min(batch, train_set.count - begin);
      const std::span<const std::int64_t> indices(order.data() + begin, static_cast<std::size_t>(n));
      // The shifts come from the one generator in batch order, whatever the thread count; each
      // shard then fills its own examples on its own thread.
      const std::span<nn::Shift> batch_shifts(shifts.data(), static_cast<std::size_t>(n));
      nn::draw_shifts(batch_shifts, c.augment, gen);
      const auto fill = [&](std::int64_t lo, std::int64_t hi, ag::Tensor& images, std::vector<std::int64_t>& targets) {
        const auto offset = static_cast<std::size_t>(lo), count = static_cast<std::size_t>(hi - lo);
        nn::fill_batch(images, targets, train_set, indices.subspan(offset, count), batch_options,
                       std::span<const nn::Shift>(batch_shifts).subspan(offset, count));
      };
      optimizer->set_lr(schedule.lr_at(step));
      const auto [loss, updated] = parallel.step(n, fill, *optimizer, predictions);
      // A NaN or Inf stops the run before it reaches the weights; the last checkpoint stays good.
      if (!std::isfinite(loss))
        throw std::runtime_error("loss is " + std::to_string(loss) + " at step " + std::to_string(step + 1) +
                                 " (epoch " + std::to_string(epoch + 1) + "); stopped without saving" +
                                 (c.checkpoint.empty() ? "" : ", last good checkpoint: " + c.checkpoint) +
                                 "; try a lower --lr");
      if (!updated)
        throw std::runtime_error("gradient of " + non_finite_gradient(model) + " is not finite at step " +
                                 std::to_string(step + 1) + "; stopped without saving" +
                                 (c.checkpoint.empty() ? "" : ", last good checkpoint: " + c.checkpoint) +
                                 "; try a lower --lr");
      ++position.step;

      position.interval_loss += loss;
      ++position.interval_steps;
      std::int64_t batch_correct = 0;
      for (std::int64_t i = 0; i < n; ++i)
        batch_correct += predictions[static_cast<std::size_t>(i)] ==
                         train_set.labels[static_cast<std::size_t>(indices[static_cast<std::size_t>(i)])];
      position.epoch_correct += batch_correct;
      position.epoch_seen += n;
      position.images_seen += n;

      if (position.step % c.log_every == 0 || it + 1 == steps_per_epoch) {
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        const double rate = static_cast<double>(position.images_seen - images_before) / seconds;
        const double remaining = static_cast<double>(total_steps - position.step) * static_cast<double>(batch) / rate;
        const double batch_acc = static_cast<double>(batch_correct) / static_cast<double>(n);
        const double train_acc = static_cast<double>(position.epoch_correct) / static_cast<double>(position.epoch_seen);
        const double progress = static_cast<double>(epoch) + static_cast<double>(it + 1) / static_cast<double>(steps_per_epoch);
        const double mean_loss = position.interval_loss / static_cast<double>(position.interval_steps);
        position.interval_loss = 0;
        position.interval_steps = 0;
        std::ostringstream row;
        row << "step," << epoch + 1 << ',' << progress << ',' << it + 1 << ',' << position.step << ',' << mean_loss << ','
            << batch_acc << ',' << train_acc << ",,," << optimizer->lr() << ',' << rate << ',' << seconds << '\n';
        position.metrics_csv += row.str();
        std::ostringstream line;
        line << std::fixed << "epoch " << epoch + 1 << "/" << c.epochs << "  iter " << std::setw(4) << it + 1 << "/"
             << steps_per_epoch << "  loss " << std::setprecision(4) << mean_loss << "  batch acc " << std::setprecision(3)
             << batch_acc << "  train acc " << train_acc << "  " << std::setprecision(0) << rate
             << " img/s  remaining " << hms(remaining);
        if (interactive) {
          constexpr int width = 24;
          const auto filled = static_cast<std::size_t>(width * (it + 1) / steps_per_epoch);
          std::cout << "\r\033[K[" << std::string(filled, '#') << std::string(width - filled, '.') << "] "
                    << line.str() << std::flush;
        } else {
          std::cout << line.str() << '\n' << std::flush;
        }
      }
      if (stop_signal) {
        ++position.iteration;  // this step is done
        write_checkpoint();
        std::cout << (interactive ? "\n" : "") << "lenet train: stopped by signal " << stop_signal << " at step "
                  << position.step
                  << (c.checkpoint.empty() ? "; no --checkpoint given, nothing saved"
                                           : "; resume with --resume " + c.checkpoint)
                  << '\n';
        return 128 + stop_signal;
      }
      if (c.checkpoint_every > 0 && position.step % c.checkpoint_every == 0 && it + 1 < steps_per_epoch) {
        position.iteration = it + 1;
        write_checkpoint();
        position.iteration = it;
      }
    }
    if (interactive) std::cout << '\n';
    last_test = evaluate(parallel, test_set, normalization);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double train_acc = static_cast<double>(position.epoch_correct) / static_cast<double>(position.epoch_seen);
    std::ostringstream row;
    row << "epoch," << epoch + 1 << ',' << epoch + 1 << ',' << steps_per_epoch << ',' << position.step << ",,,"
        << train_acc << ',' << last_test.loss << ',' << last_test.accuracy << ',' << optimizer->lr() << ','
        << static_cast<double>(position.images_seen - images_before) / seconds << ',' << seconds << '\n';
    position.metrics_csv += row.str();
    std::cout << std::fixed << std::setprecision(4) << "epoch " << epoch + 1 << "/" << c.epochs << " done in "
              << hms(seconds) << ": train acc " << train_acc << ", test loss " << last_test.loss << ", test acc "
              << last_test.accuracy << '\n'
              << std::flush;
    position.iteration = 0;
    position.epoch_correct = position.epoch_seen = 0;
    if (epoch + 1 < c.epochs) {
      ++position.epoch;  // the checkpoint points at the next epoch's start
      write_checkpoint();
      --position.epoch;
    }
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);

  nn::Metadata metadata{{"model", "LeNet-5"},
                        {"dataset", "MNIST"},
                        {"test_accuracy", std::to_string(last_test.accuracy)},
                        {"test_loss", std::to_string(last_test.loss)},
                        {"command", command_line(args)}};
  for (const auto& [key, value] : config) metadata["train." + key] = value;
  nn::record_normalization(metadata, normalization);
  nn::save_weights(model, c.out, metadata);
  if (!c.checkpoint.empty()) {  // the finished run's checkpoint, for the record
    write_checkpoint();
  }
  std::cout << "wrote " << c.out;
  if (!c.metrics.empty()) {
    ensure_parent_directory(c.metrics);
    ag::write_file_atomically(c.metrics, position.metrics_csv);
    std::cout << ", " << c.metrics;
    if (!c.plot.empty()) {
      ensure_parent_directory(c.plot);
      plot_training_curves(c.metrics, c.plot);
      std::cout << ", " << c.plot;
    }
  }
  std::cout << '\n';
  return 0;
}

}  // namespace cli
