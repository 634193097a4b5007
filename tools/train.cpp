// lenet train: any registered model on MNIST with live progress, per-epoch test scores, weights,
// metrics, plot, crash-safe checkpoints and exact resume, in one process or in every rank of an
// mpirun job. The training itself is nn::Trainer's; this file turns options into TrainOptions and
// reports into lines and files (on rank 0 only).
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "autograd/file.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/weights.hpp"
#include "models/train/communicator.hpp"
#include "models/train/trainer.hpp"
#include "tools/cli.hpp"
#include "tools/plot.hpp"

namespace cli {

namespace {

// Set by SIGINT/SIGTERM; the trainer polls it between steps, saves a checkpoint and stops.
volatile std::sig_atomic_t stop_signal = 0;
extern "C" void request_stop(int signal) { stop_signal = signal; }

// Explicit options that contradict a checkpoint's record are refused: a resumed run keeps its
// settings.
void refuse_contradictions(const nn::Metadata& saved, const nn::TrainOptions& mine, const po::variables_map& vm) {
  const nn::Metadata record = nn::complete_run_defining(saved);
  for (const auto& [key, value] : nn::run_defining(mine)) {
    const auto it = record.find(key);
    if (it == record.end()) continue;
    const bool explicit_option = key == "nesterov" ? vm.count("no-nesterov") > 0
                                                   : vm.count(key) && !vm[key].defaulted();
    if (explicit_option && it->second != value)
      throw UsageError("--" + key + " " + value + " contradicts the checkpoint's " + it->second +
                       " (a resumed run keeps its settings)");
  }
}

std::string hms(double seconds) {
  const auto s = static_cast<long>(std::max(0.0, seconds) + 0.5);
  std::ostringstream out;
  out << std::setfill('0');
  if (s >= 3600) out << s / 3600 << "h" << std::setw(2) << (s % 3600) / 60 << "m";
  else out << s / 60 << "m" << std::setw(2) << s % 60 << "s";
  return out.str();
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

int train_in(nn::Communicator* ranks, const std::vector<std::string>& args) {
  // The model decides the defaults of the other options, so it is read first.
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  // Ranks on one machine share its cores.
  const int local_ranks = ranks ? ranks->local_size() : 1;
  nn::TrainOptions o{.model = entry.name, .recipe = entry.recipe,
                     .threads = std::max(1, default_threads() / local_ranks), .ranks = ranks};
  // Rank 0 prints and writes the files; the others' console discards what it is given.
  const bool lead = !ranks || ranks->rank() == 0;
  std::ostream discard(nullptr);
  std::ostream& console = lead ? std::cout : discard;
  double rank_timeout = 20;
  nn::Recipe& r = o.recipe;
  std::string data = "data/mnist", resume, out = "runs/" + entry.name + ".safetensors",
              metrics = "runs/metrics.csv", plot = "runs/training.png";
  po::options_description options("options");
  add_model_option(options);
  options.add_options()
      ("data", po::value(&data)->default_value(data), "directory with the MNIST IDX files")
      ("epochs", po::value(&r.epochs)->default_value(r.epochs), "passes over the training set")
      ("batch-size", po::value(&r.batch_size)->default_value(r.batch_size), "examples per step")
      ("lr", po::value(&r.lr)->default_value(r.lr), "peak learning rate")
      ("momentum", po::value(&r.momentum)->default_value(r.momentum), "SGD momentum (0 for none)")
      ("no-nesterov", "plain momentum instead of Nesterov's")
      ("weight-decay", po::value(&r.weight_decay)->default_value(r.weight_decay), "L2 penalty")
      ("optimizer", po::value(&r.optimizer)->default_value(r.optimizer), "sgd, adam or sdlm")
      ("schedule", po::value(&r.schedule)->default_value(r.schedule),
       "constant, step, cosine or lecun1998 (the 1998 paper's global rates per pass, as factors of --lr)")
      ("mu", po::value(&r.mu)->default_value(r.mu), "sdlm: step lr / (mu + curvature)")
      ("curvature-samples", po::value(&r.curvature_samples)->default_value(r.curvature_samples),
       "sdlm: patterns the curvature is estimated on before each epoch")
      ("order", po::value(&r.order)->default_value(r.order), "shuffled (anew each epoch) or fixed (one order)")
      ("distort", "train on the images plus 9 random affine distortions of each (LeCun et al. 1998)")
      ("train-error", "also evaluate the whole training set after each epoch")
      ("warmup-steps", po::value(&r.warmup_steps)->default_value(r.warmup_steps),
       "lr rises linearly to --lr over the first N steps (0: none)")
      ("step-epochs", po::value(&r.step_epochs)->default_value(r.step_epochs), "--schedule step: epochs between decays")
      ("gamma", po::value(&r.gamma)->default_value(r.gamma), "--schedule step: decay factor")
      ("augment", po::value(&r.augment)->default_value(r.augment), "random shifts of up to N pixels (0: off)")
      ("seed", po::value(&o.seed)->default_value(o.seed), "seed of initialisation, shuffling, augmentation and dropout")
      ("threads", po::value(&o.threads)->default_value(o.threads),
       "data-parallel worker threads (of each rank under mpirun)")
      ("rank-timeout", po::value(&rank_timeout)->default_value(rank_timeout),
       "under mpirun: seconds to wait for the other ranks at an exchange before stopping")
      ("limit", po::value(&o.limit)->default_value(o.limit), "use only the first N training images (0: all)")
      ("log-every", po::value(&o.log_every)->default_value(o.log_every), "steps between progress lines")
      ("out", po::value(&out)->default_value(out), "weights file to write (safetensors)")
      ("metrics", po::value(&metrics)->default_value(metrics), "metrics CSV to write ('' for none)")
      ("plot", po::value(&plot)->default_value(plot), "PNG plot of the curves to write ('' for none)")
      ("checkpoint", po::value(&o.checkpoint), "write a checkpoint here at each epoch end and on SIGINT/SIGTERM")
      ("checkpoint-every", po::value(&o.checkpoint_every)->default_value(0), "also every N steps (0: epoch ends only)")
      ("resume", po::value(&resume), "continue the run saved in this checkpoint");
  po::variables_map vm;
  if (!parse("train", "[--model NAME] [OPTIONS]", options, args, vm)) return 0;
  r.nesterov = vm.count("no-nesterov") == 0;
  if (vm.count("distort")) r.distort = true;
  o.evaluate_training_set = vm.count("train-error") > 0;
  if (!resume.empty()) {
    const nn::Metadata saved = nn::checkpoint_config(resume);
    refuse_contradictions(saved, o, vm);
    nn::adopt_run_defining(o, saved, resume);
    if (vm["out"].defaulted()) out = "runs/" + o.model + ".safetensors";
  }
  try {
    nn::validate(o);
  } catch (const nn::TrainOptionError& e) {
    throw UsageError(e.what());
  }
  if (out.empty()) throw UsageError("--out must name a file");
  if (!(rank_timeout > 0)) throw UsageError("--rank-timeout must be positive");
  if (ranks) {
    ranks->set_timeout(std::chrono::milliseconds(static_cast<std::int64_t>(rank_timeout * 1000)));
    ranks->set_interrupt([] { return stop_signal != 0; });
  }
  data = resolve_path(vm, "data", kFetchMnistHint);

  const nn::MnistSplit train_set = nn::load_mnist(data, nn::Split::Train);
  const nn::MnistSplit test_set = nn::load_mnist(data, nn::Split::Test);
  std::unique_ptr<nn::Trainer> trainer;
  try {
    trainer = std::make_unique<nn::Trainer>(o, train_set, test_set, resume);
  } catch (const nn::TrainOptionError& e) {
    throw UsageError(e.what());
  }
  const nn::TrainingPosition& position = trainer->position();
  const std::int64_t examples = o.limit > 0 ? std::min(o.limit, train_set.count) : train_set.count;

  const bool interactive = ::isatty(STDOUT_FILENO);
  console << "lenet train: " << o.model << ", seed " << o.seed << ", ";
  if (ranks) console << ranks->size() << " ranks of ";
  console << o.threads << " thread(s), " << examples << " training and " << test_set.count << " test images, "
          << r.epochs << " epochs of " << trainer->steps_per_epoch() << " steps (batch " << trainer->batch_size()
          << "), " << r.optimizer << " lr " << r.lr << " " << r.schedule;
  if (r.warmup_steps > 0) console << " after " << r.warmup_steps << " warm-up steps";
  console << ", " << trainer->model().parameter_count() << " parameters";
  if (!resume.empty()) console << "; resuming " << resume << " at epoch " << position.epoch + 1 << " step " << position.step;
  console << '\n' << std::flush;

  if (lead) {
    ensure_parent_directory(out);
    if (!o.checkpoint.empty()) ensure_parent_directory(o.checkpoint);
  }
  stop_signal = 0;
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);

  nn::TrainCallbacks callbacks;
  callbacks.should_stop = [] { return stop_signal != 0; };
  callbacks.on_step = [&](const nn::StepReport& s) {
    std::ostringstream line;
    line << std::fixed << "epoch " << s.epoch + 1 << "/" << s.epochs << "  iter " << std::setw(4) << s.iteration << "/"
         << s.steps_per_epoch << "  loss " << std::setprecision(4) << s.loss << "  batch acc " << std::setprecision(3)
         << s.batch_accuracy << "  train acc " << s.train_accuracy << "  " << std::setprecision(0)
         << s.images_per_second << " img/s  remaining " << hms(s.seconds_remaining);
    if (interactive) {
      constexpr int width = 24;
      const auto filled = static_cast<std::size_t>(width * s.iteration / s.steps_per_epoch);
      console << "\r\033[K[" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << line.str()
              << std::flush;
    } else {
      console << line.str() << '\n' << std::flush;
    }
  };
  callbacks.on_epoch = [&](const nn::EpochReport& e) {
    if (interactive) console << '\n';
    console << std::fixed << std::setprecision(4) << "epoch " << e.epoch + 1 << "/" << e.epochs << " done in "
            << hms(e.seconds) << ": train acc " << e.train_accuracy;
    if (o.evaluate_training_set) console << " (whole set " << e.train_set.accuracy << ")";
    console << ", test loss " << e.test.loss << ", test acc " << e.test.accuracy << '\n' << std::flush;
  };

  bool finished = false;
  try {
    finished = trainer->run(callbacks);
  } catch (const nn::RankLost& e) {
    throw nn::RankLost(e.what() + (o.checkpoint.empty() ? std::string("; no --checkpoint given, nothing saved")
                                                         : "; the last checkpoint is " + o.checkpoint));
  }
  if (!finished) {
    console << (interactive ? "\n" : "") << "lenet train: stopped by signal " << stop_signal << " at step "
            << position.step
            << (o.checkpoint.empty() ? "; no --checkpoint given, nothing saved" : "; resume with --resume " + o.checkpoint)
            << '\n';
    // The ranks stopped together; one asked by a signal may share it with the others or not.
    return 128 + (stop_signal != 0 ? stop_signal : SIGTERM);
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (!lead) return 0;
  if (const auto& exchange = trainer->parallel().exchange_stats(); exchange.steps > 0)
    console << std::fixed << std::setprecision(0) << "lenet train: " << ranks->size() << " ranks exchanged "
            << static_cast<double>(exchange.bytes_per_rank) / 1024 << " KiB per rank per step, in "
            << exchange.seconds / static_cast<double>(exchange.steps) * 1e6
            << " us per step on average (waiting for the slowest rank included)\n";

  nn::Metadata metadata = trainer->weights_metadata();
  metadata["command"] = command_line(args);
  nn::save_weights(trainer->model(), out, metadata);
  console << "wrote " << out;
  if (!metrics.empty()) {
    ensure_parent_directory(metrics);
    ag::write_file_atomically(metrics, trainer->metrics_csv());
    console << ", " << metrics;
    if (!plot.empty()) {
      ensure_parent_directory(plot);
      plot_training_curves(metrics, plot, o.model + " on MNIST");
      console << ", " << plot;
    }
  }
  console << '\n';
  return 0;
}

}  // namespace

int train(const std::vector<std::string>& args) {
  const std::unique_ptr<nn::Communicator> job = nn::join_mpi_job();
  if (!job || job->size() == 1) return train_in(job.get(), args);
  // Across ranks an error may be every rank's (an option, a disagreement: rank 0 says it) or one
  // rank's own (a file missing on its host: it says it). Either way the job ends at once: the
  // other ranks would otherwise wait for this one until their timeout.
  const std::string rank = "rank " + std::to_string(job->rank()) + " of " + std::to_string(job->size()) + ": ";
  int code = 1;
  try {
    return train_in(job.get(), args);
  } catch (const nn::UnknownModel& e) {
    if (job->rank() == 0) std::cerr << "lenet train: " << e.what() << '\n';
    code = 2;
  } catch (const UsageError& e) {
    if (job->rank() == 0) std::cerr << "lenet train: " << e.what() << " (see lenet train --help)\n";
    code = 2;
  } catch (const nn::RanksDisagree& e) {
    if (job->rank() == 0) std::cerr << "lenet train: " << e.what() << '\n';
  } catch (const nn::RankLost& e) {
    std::cerr << "lenet train: " << e.what() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "lenet train: " << rank << e.what() << '\n';
  }
  std::cerr << std::flush;
  job->abort(code);
  return code;  // not reached: abort ends the process
}

}  // namespace cli
