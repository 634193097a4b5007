// lenet train: LeNet-5 on MNIST with live progress, per-epoch test scores, weights, metrics and plot.
#include <cblas.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "autograd/file.hpp"
#include "models/lenet.hpp"
#include "models/mnist.hpp"
#include "models/optim.hpp"
#include "models/weights.hpp"
#include "ops/loss.hpp"
#include "tools/cli.hpp"
#include "tools/evaluation.hpp"
#include "tools/plot.hpp"

namespace cli {

namespace {

using Clock = std::chrono::steady_clock;

struct TrainConfig {
  std::string data = "data/mnist";
  std::int64_t epochs = 10;
  std::int64_t batch_size = 64;
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;
  std::string optimizer = "sgd";
  std::string schedule = "cosine";
  std::int64_t step_epochs = 5;  // for --schedule step
  double gamma = 0.1;
  int augment = 2;
  std::uint64_t seed = 1;
  int threads = 1;
  std::int64_t limit = 0;
  std::int64_t log_every = 100;
  std::string out = "runs/lenet5.safetensors";
  std::string metrics = "runs/metrics.csv";
  std::string plot = "runs/training.png";
};

std::string hms(double seconds) {
  const auto s = static_cast<long>(std::max(0.0, seconds) + 0.5);
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s % 3600) / 60 << "m";
  else out << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  return out.str();
}

std::string command_line(const std::vector<std::string>& args) {
  std::string out = "lenet train";
  for (const auto& a : args) out += " " + a;
  return out;
}

// One model per thread: replicas share the master's parameter storage (so the optimiser's in-place
// update reaches all of them) but have their own gradients, summed into the master's after each
// backward. The batch is split into contiguous shards, always in the same way, so a fixed seed and
// thread count reproduce a run bit for bit.
class DataParallel {
 public:
  DataParallel(nn::LeNet5& master, int threads, std::uint64_t seed) : master_(master) {
    for (int t = 1; t < threads; ++t) {
      ag::Generator unused(seed);
      auto replica = std::make_unique<nn::LeNet5>(unused);
      auto from = master.parameters();
      auto to = replica->parameters();
      for (std::size_t i = 0; i < from.size(); ++i) to[i].mutable_value() = from[i].value();
      replicas_.push_back(std::move(replica));
    }
  }

  int threads() const { return static_cast<int>(replicas_.size()) + 1; }

  /// Forward, loss and backward for one batch already split into `shards` (at most threads());
  /// leaves the gradient of
  /// the whole batch's mean loss in the master's parameters. Returns the mean loss and fills the
  /// predictions of every example, in batch order.
  double step(std::vector<ag::Tensor>& images, std::vector<std::vector<std::int64_t>>& targets,
              int shards, std::int64_t batch, std::vector<std::uint8_t>& predictions) {
    const int n = shards;
    std::vector<double> losses(static_cast<std::size_t>(n));
    std::vector<std::vector<std::uint8_t>> shard_predictions(static_cast<std::size_t>(n));
    auto run_shard = [&](int s) {
      nn::LeNet5& model = s == 0 ? master_ : *replicas_[static_cast<std::size_t>(s - 1)];
      model.zero_grad();
      const ag::Variable logp = model(ag::Variable(images[static_cast<std::size_t>(s)]));
      const ag::Variable loss = ag::nll_loss(logp, targets[static_cast<std::size_t>(s)]);
      shard_predictions[static_cast<std::size_t>(s)] = argmax_rows(logp.value());
      losses[static_cast<std::size_t>(s)] = loss.value().item();
      loss.backward();
    };
    {
      std::vector<std::jthread> workers;
      for (int s = 1; s < n; ++s) workers.emplace_back(run_shard, s);
      run_shard(0);
    }
    // Each shard's gradient is of its own mean; weight by shard size for the batch mean.
    double loss = 0;
    predictions.clear();
    auto master_params = master_.parameters();
    for (int s = 0; s < n; ++s) {
      const double weight = static_cast<double>(targets[static_cast<std::size_t>(s)].size()) /
                            static_cast<double>(batch);
      loss += weight * losses[static_cast<std::size_t>(s)];
      predictions.insert(predictions.end(), shard_predictions[static_cast<std::size_t>(s)].begin(),
                         shard_predictions[static_cast<std::size_t>(s)].end());
      auto params = s == 0 ? master_params : replicas_[static_cast<std::size_t>(s - 1)]->parameters();
      for (std::size_t i = 0; i < params.size(); ++i) {
        float* g = params[i].mutable_grad().data<float>();
        const std::int64_t count = params[i].value().numel();
        if (s == 0) {
          for (std::int64_t k = 0; k < count; ++k) g[k] *= static_cast<float>(weight);
        } else {
          float* master_grad = master_params[i].mutable_grad().data<float>();
          for (std::int64_t k = 0; k < count; ++k) master_grad[k] += static_cast<float>(weight) * g[k];
        }
      }
    }
    return loss;
  }

 private:
  nn::LeNet5& master_;
  std::vector<std::unique_ptr<nn::LeNet5>> replicas_;
};

void ensure_parent_directory(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
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
      ("step-epochs", po::value(&c.step_epochs)->default_value(c.step_epochs), "--schedule step: epochs between decays")
      ("gamma", po::value(&c.gamma)->default_value(c.gamma), "--schedule step: decay factor")
      ("augment", po::value(&c.augment)->default_value(c.augment), "random shifts of up to N pixels (0: off)")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed for initialisation, shuffling and augmentation")
      ("threads", po::value(&c.threads)->default_value(c.threads), "data-parallel worker threads")
      ("limit", po::value(&c.limit)->default_value(c.limit), "use only the first N training images (0: all)")
      ("log-every", po::value(&c.log_every)->default_value(c.log_every), "steps between progress lines")
      ("out", po::value(&c.out)->default_value(c.out), "weights file to write (safetensors)")
      ("metrics", po::value(&c.metrics)->default_value(c.metrics), "metrics CSV to write")
      ("plot", po::value(&c.plot)->default_value(c.plot), "PNG plot of the curves to write ('' for none)");
  po::variables_map vm;
  if (!parse("train", "[OPTIONS]", options, args, vm)) return 0;
  c.nesterov = vm.count("no-nesterov") == 0;
  require_positive("epochs", static_cast<double>(c.epochs));
  require_positive("batch-size", static_cast<double>(c.batch_size));
  require_positive("lr", c.lr);
  require_positive("log-every", static_cast<double>(c.log_every));
  if (c.threads < 1 || c.threads > 64) throw UsageError("--threads must be in [1, 64]");
  if (c.limit < 0) throw UsageError("--limit must not be negative");
  if (c.augment < 0 || c.augment > 8) throw UsageError("--augment must be in [0, 8]");
  if (c.momentum < 0 || c.momentum >= 1) throw UsageError("--momentum must be in [0, 1)");
  if (c.weight_decay < 0) throw UsageError("--weight-decay must not be negative");
  if (c.optimizer != "sgd" && c.optimizer != "adam") throw UsageError("--optimizer must be sgd or adam");
  if (c.schedule != "constant" && c.schedule != "step" && c.schedule != "cosine")
    throw UsageError("--schedule must be constant, step or cosine");

  // Our own threads do the parallel work; OpenBLAS inside them must not start threads of its own.
  openblas_set_num_threads(1);

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

  ag::Generator gen(c.seed);
  nn::LeNet5 model(gen);
  DataParallel parallel(model, c.threads, c.seed);
  std::unique_ptr<nn::Optimizer> optimizer;
  if (c.optimizer == "adam")
    optimizer = std::make_unique<nn::Adam>(model.parameters(),
                                           nn::AdamOptions{.lr = c.lr, .weight_decay = c.weight_decay});
  else
    optimizer = std::make_unique<nn::SGD>(
        model.parameters(), nn::SGDOptions{.lr = c.lr, .momentum = c.momentum,
                                           .weight_decay = c.weight_decay, .nesterov = c.nesterov});
  nn::LrSchedule schedule{.base_lr = c.lr, .total_steps = total_steps,
                          .step_size = c.step_epochs * steps_per_epoch, .gamma = c.gamma};
  schedule.kind = c.schedule == "cosine" ? nn::LrSchedule::Kind::Cosine
                  : c.schedule == "step" ? nn::LrSchedule::Kind::Step
                                         : nn::LrSchedule::Kind::Constant;

  const nn::Normalization normalization;
  const nn::BatchOptions batch_options{.mean = normalization.mean, .stddev = normalization.std,
                                       .max_shift = c.augment};
  const bool interactive = ::isatty(STDOUT_FILENO);

  std::cout << "lenet train: seed " << c.seed << ", " << c.threads << " thread(s), "
            << train_set.count << " training and " << test_set.count << " test images, "
            << c.epochs << " epochs of " << steps_per_epoch << " steps (batch " << batch << "), "
            << c.optimizer << " lr " << c.lr << " " << c.schedule << ", " << model.parameter_count()
            << " parameters\n"
            << std::flush;

  ensure_parent_directory(c.out);
  if (!c.metrics.empty()) ensure_parent_directory(c.metrics);
  std::ostringstream csv;
  csv << "kind,epoch,epoch_progress,iteration,step,loss,batch_accuracy,train_accuracy,test_loss,"
         "test_accuracy,lr,images_per_second,seconds\n";

  std::vector<ag::Tensor> shard_images(static_cast<std::size_t>(c.threads));
  std::vector<std::vector<std::int64_t>> shard_targets(static_cast<std::size_t>(c.threads));
  std::vector<std::uint8_t> predictions;
  const auto start = Clock::now();
  std::int64_t step = 0, images_seen = 0;
  Evaluation last_test;

  for (std::int64_t epoch = 0; epoch < c.epochs; ++epoch) {
    std::vector<std::int64_t> order = nn::example_order(train_set.count, &gen);
    std::int64_t epoch_correct = 0, epoch_seen = 0;
    for (std::int64_t it = 0; it < steps_per_epoch; ++it, ++step) {
      const std::int64_t begin = it * batch, n = std::min(batch, train_set.count - begin);
      const std::span<const std::int64_t> indices(order.data() + begin, static_cast<std::size_t>(n));
      // Shards are filled one after another from the one generator: deterministic augmentation.
      const int shards = static_cast<int>(std::min<std::int64_t>(parallel.threads(), n));
      for (int s = 0; s < shards; ++s) {
        const std::int64_t lo = n * s / shards, hi = n * (s + 1) / shards;
        nn::fill_batch(shard_images[static_cast<std::size_t>(s)],
                       shard_targets[static_cast<std::size_t>(s)], train_set,
                       indices.subspan(static_cast<std::size_t>(lo), static_cast<std::size_t>(hi - lo)),
                       batch_options, &gen);
      }
      optimizer->set_lr(schedule.lr_at(step));
      const double loss = parallel.step(shard_images, shard_targets, shards, n, predictions);
      optimizer->step();

      std::int64_t batch_correct = 0;
      for (std::int64_t i = 0; i < n; ++i)
        batch_correct += predictions[static_cast<std::size_t>(i)] ==
                         train_set.labels[static_cast<std::size_t>(indices[static_cast<std::size_t>(i)])];
      epoch_correct += batch_correct;
      epoch_seen += n;
      images_seen += n;

      const bool last = it + 1 == steps_per_epoch;
      if ((step + 1) % c.log_every == 0 || last) {
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        const double rate = static_cast<double>(images_seen) / seconds;
        const double remaining =
            static_cast<double>(total_steps - step - 1) * static_cast<double>(batch) / rate;
        const double batch_acc = static_cast<double>(batch_correct) / static_cast<double>(n);
        const double train_acc = static_cast<double>(epoch_correct) / static_cast<double>(epoch_seen);
        const double epoch_progress = static_cast<double>(epoch) + static_cast<double>(it + 1) /
                                                                        static_cast<double>(steps_per_epoch);
        csv << "step," << epoch + 1 << ',' << epoch_progress << ',' << it + 1 << ',' << step + 1 << ','
            << loss << ',' << batch_acc << ',' << train_acc << ",,," << optimizer->lr() << ',' << rate
            << ',' << seconds << '\n';
        std::ostringstream line;
        line << std::fixed << "epoch " << epoch + 1 << "/" << c.epochs << "  iter " << std::setw(4)
             << it + 1 << "/" << steps_per_epoch << "  loss " << std::setprecision(4) << loss
             << "  batch acc " << std::setprecision(3) << batch_acc << "  train acc " << train_acc
             << "  " << std::setprecision(0) << rate << " img/s  remaining " << hms(remaining);
        if (interactive) {
          constexpr int width = 24;
          const int filled = static_cast<int>(width * (it + 1) / steps_per_epoch);
          std::cout << "\r\033[K[" << std::string(static_cast<std::size_t>(filled), '#')
                    << std::string(static_cast<std::size_t>(width - filled), '.') << "] " << line.str()
                    << std::flush;
        } else {
          std::cout << line.str() << '\n' << std::flush;
        }
      }
      if (!std::isfinite(loss))
        throw std::runtime_error("loss became " + std::to_string(loss) + " at step " +
                                 std::to_string(step + 1) + "; lower --lr");
    }
    if (interactive) std::cout << '\n';
    last_test = evaluate(model, test_set, normalization);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double train_acc = static_cast<double>(epoch_correct) / static_cast<double>(epoch_seen);
    csv << "epoch," << epoch + 1 << ',' << epoch + 1 << ',' << steps_per_epoch << ',' << step << ",,,"
        << train_acc << ',' << last_test.loss << ',' << last_test.accuracy << ',' << optimizer->lr()
        << ',' << static_cast<double>(images_seen) / seconds << ',' << seconds << '\n';
    std::cout << std::fixed << std::setprecision(4) << "epoch " << epoch + 1 << "/" << c.epochs
              << " done in " << hms(seconds) << ": train acc " << train_acc << ", test loss "
              << last_test.loss << ", test acc " << last_test.accuracy << '\n'
              << std::flush;
  }

  nn::Metadata metadata{{"model", "LeNet-5"},
                        {"dataset", "MNIST"},
                        {"test_accuracy", std::to_string(last_test.accuracy)},
                        {"test_loss", std::to_string(last_test.loss)},
                        {"epochs", std::to_string(c.epochs)},
                        {"seed", std::to_string(c.seed)},
                        {"threads", std::to_string(c.threads)},
                        {"command", command_line(args)}};
  nn::record_normalization(metadata, normalization);
  nn::save_weights(model, c.out, metadata);
  std::cout << "wrote " << c.out;
  if (!c.metrics.empty()) {
    ag::write_file_atomically(c.metrics, csv.str());
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
