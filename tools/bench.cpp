// lenet bench: training and inference speed of a registered model (images/s at several batch sizes and thread
// counts), single-image latency, peak memory, and whether steady steps still take memory from the
// system. Cells are measured in interleaved rounds and reported as medians, so a burst of load
// from another process on a shared machine touches one sample of every cell, not one whole cell.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "autograd/allocator.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/optim.hpp"
#include "models/registry.hpp"
#include "models/train/data_parallel.hpp"
#include "tools/cli.hpp"

namespace cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<std::int64_t> parse_list(const std::string& option, const std::string& text) {
  std::vector<std::int64_t> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    std::int64_t value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || value < 1)
      throw UsageError("--" + option + " takes positive integers separated by commas, got '" +
                       text + "'");
    values.push_back(value);
  }
  if (values.empty()) throw UsageError("--" + option + " is empty");
  return values;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

// 60,000 random "images" for machines without MNIST: speed does not depend on the pixels.
nn::MnistSplit synthetic_split(std::int64_t count) {
  nn::MnistSplit split;
  split.count = count, split.rows = 28, split.cols = 28;
  ag::Generator gen(1);
  split.images.resize(static_cast<std::size_t>(count * 784));
  for (auto& p : split.images) p = static_cast<std::uint8_t>(gen.below(256));
  split.labels.resize(static_cast<std::size_t>(count));
  for (auto& l : split.labels) l = static_cast<std::uint8_t>(gen.below(10));
  return split;
}

// One cell of the table: a model, its threads and its batch buffers, ready to run steps.
class Runner {
 public:
  Runner(const nn::ModelEntry& entry, bool training, std::int64_t batch, int threads,
         const nn::MnistSplit& data)
      : training_(training),
        batch_(batch),
        data_(data),
        gen_(1),
        model_(entry.make(gen_)),
        parallel_(*model_, nn::factory_of(entry), threads),
        optimizer_(
            model_->parameters(),
            nn::SGDOptions{.lr = 0.01, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true}),
        shards_(parallel_.shards(batch)),
        images_(static_cast<std::size_t>(threads)),
        targets_(static_cast<std::size_t>(threads)),
        indices_(static_cast<std::size_t>(batch)),
        outputs_(static_cast<std::size_t>(threads)) {
    if (!training) model_->eval();
  }

  // One step on the next `batch` examples: a training step (batch preparation, forward, loss,
  // backward, gradient sum, SGD update) or an inference pass (preparation, forward, argmax).
  void step() {
    for (std::int64_t i = 0; i < batch_; ++i)
      indices_[static_cast<std::size_t>(i)] = (next_ + i) % data_.count;
    next_ = (next_ + batch_) % data_.count;
    const auto fill = [&](std::int64_t lo, std::int64_t hi, ag::Tensor& images,
                          std::vector<std::int64_t>& targets) {
      nn::fill_batch(images, targets, data_,
                     std::span<const std::int64_t>(indices_).subspan(
                         static_cast<std::size_t>(lo), static_cast<std::size_t>(hi - lo)),
                     options_);
    };
    if (training_) {
      parallel_.step(batch_, fill, optimizer_, predictions_);
      return;
    }
    parallel_.run(shards_, [&](int shard, nn::Model& net) {
      const std::int64_t lo = batch_ * shard / shards_, hi = batch_ * (shard + 1) / shards_;
      fill(lo, hi, images_[static_cast<std::size_t>(shard)], targets_[static_cast<std::size_t>(shard)]);
      ag::NoGradGuard no_grad;
      outputs_[static_cast<std::size_t>(shard)] =
          net.log_probabilities(net(ag::Variable(images_[static_cast<std::size_t>(shard)]))).value();
    });
  }

  std::int64_t batch() const { return batch_; }

 private:
  bool training_;
  std::int64_t batch_, next_ = 0;
  const nn::MnistSplit& data_;
  ag::Generator gen_;
  std::unique_ptr<nn::Model> model_;
  nn::DataParallel parallel_;
  nn::SGD optimizer_;
  int shards_;
  nn::BatchOptions options_;
  std::vector<ag::Tensor> images_;
  std::vector<std::vector<std::int64_t>> targets_;
  std::vector<std::int64_t> indices_;
  std::vector<std::uint8_t> predictions_;
  std::vector<ag::Tensor> outputs_;
};

struct Cell {
  bool training;
  std::int64_t batch;
  int threads;
  std::unique_ptr<Runner> runner;
  std::vector<double> rates;  // images/s, one per round
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Steps for about `seconds` (at least two) and returns images per second.
double measure(Runner& runner, double seconds) {
  const auto start = Clock::now();
  std::int64_t steps = 0;
  do {
    runner.step();
    ++steps;
  } while (steps < 2 || seconds_since(start) < seconds);
  return static_cast<double>(steps * runner.batch()) / seconds_since(start);
}

std::string format_rate(double rate) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(0) << rate;
  return out.str();
}

}  // namespace

int bench(const std::vector<std::string>& args) {
  std::string data_dir = "data/mnist", batches_text = "1,10,100,1000", threads_text = "1,2",
              modes_text = "train,infer,latency";
  double seconds = 0.5;
  int rounds = 3;
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  po::options_description options("options");
  add_model_option(options);
  // clang-format off
  options.add_options()
      ("data", po::value(&data_dir)->default_value(data_dir),
       "MNIST directory (synthetic images if absent)")
      ("synthetic", "use random images even if MNIST is present")
      ("batch", po::value(&batches_text)->default_value(batches_text), "batch sizes, comma-separated")
      ("threads", po::value(&threads_text)->default_value(threads_text),
       "thread counts, comma-separated")
      ("modes", po::value(&modes_text)->default_value(modes_text), "any of train,infer,latency")
      ("seconds", po::value(&seconds)->default_value(seconds), "time per cell and round")
      ("rounds", po::value(&rounds)->default_value(rounds),
       "interleaved rounds (the median is reported)")
      ("csv", "print comma-separated values instead of the table");
  // clang-format on
  po::variables_map vm;
  if (!parse("bench",
             "[--model NAME] [--batch 1,10,100,1000] [--threads 1,2] [--modes train,infer,latency] [--csv]",
             options, args, vm))
    return 0;
  require_positive("seconds", seconds);
  require_positive("rounds", rounds);
  const std::vector<std::int64_t> batches = parse_list("batch", batches_text);
  const std::vector<std::int64_t> thread_counts = parse_list("threads", threads_text);
  for (std::int64_t b : batches)
    if (b > 60000) throw UsageError("--batch takes sizes up to 60000 (MNIST's training set), got " + std::to_string(b));
  for (std::int64_t t : thread_counts)
    if (t > 64) throw UsageError("--threads takes counts up to 64, got " + std::to_string(t));
  bool train_mode = false, infer_mode = false, latency_mode = false;
  {
    std::stringstream in(modes_text);
    for (std::string mode; std::getline(in, mode, ',');) {
      if (mode == "train")
        train_mode = true;
      else if (mode == "infer")
        infer_mode = true;
      else if (mode == "latency")
        latency_mode = true;
      else
        throw UsageError("--modes takes train, infer and latency, got '" + mode + "'");
    }
  }
  const bool csv = vm.count("csv") > 0;

  bool real = false;
  nn::MnistSplit train_set, test_set;
  if (!vm.count("synthetic")) {
    try {
      data_dir = resolve_path(vm, "data");
      train_set = nn::load_mnist(data_dir, nn::Split::Train);
      test_set = nn::load_mnist(data_dir, nn::Split::Test);
      real = true;
    } catch (const MissingPath&) {
    } catch (const nn::DataError&) {
    }
  }
  if (!real) train_set = synthetic_split(60000), test_set = synthetic_split(10000);

  std::vector<Cell> cells;
  for (bool training : {true, false}) {
    if ((training && !train_mode) || (!training && !infer_mode)) continue;
    for (std::int64_t threads : thread_counts)
      for (std::int64_t batch : batches)
        cells.push_back({training,
                         batch,
                         static_cast<int>(threads),
                         std::make_unique<Runner>(entry, training, batch, static_cast<int>(threads),
                                                  training ? train_set : test_set),
                         {}});
  }

  if (!csv)
    std::cout << "lenet bench: " << entry.name << " on " << (real ? "MNIST" : "synthetic") << " images; "
              << cpu_model() << ", " << std::thread::hardware_concurrency() << " hardware threads\n"
              << "images/s, median of " << rounds << " interleaved rounds of " << seconds
              << " s per cell\n"
              << std::flush;

  // Warm-up: the first steps fill the allocator's cache and the CPU caches. Twice over all cells:
  // a cell's first steps may take blocks that an earlier cell's steps return to the cache.
  for (int pass = 0; pass < 2; ++pass)
    for (Cell& cell : cells) measure(*cell.runner, std::min(0.05, seconds));
  const std::int64_t blocks_before = ag::allocator_stats().system_allocations;
  for (int round = 0; round < rounds; ++round)
    for (Cell& cell : cells) cell.rates.push_back(measure(*cell.runner, seconds));
  const std::int64_t fresh_blocks = ag::allocator_stats().system_allocations - blocks_before;

  // Latency: one image through the network, timed one call at a time.
  std::vector<double> latencies_us;
  if (latency_mode) {
    ag::Generator gen(1);
    const std::unique_ptr<nn::Model> model = entry.make(gen);
    model->eval();
    ag::Tensor image;
    std::vector<std::int64_t> target;
    const std::int64_t index = 0;
    nn::fill_batch(image, target, test_set, std::span<const std::int64_t>(&index, 1));
    ag::NoGradGuard no_grad;
    const auto one = [&] {
      const auto start = Clock::now();
      const ag::Variable logp = model->log_probabilities((*model)(ag::Variable(image)));
      (void)logp.value();
      latencies_us.push_back(seconds_since(start) * 1e6);
    };
    for (int i = 0; i < 200; ++i) one();  // warm-up
    latencies_us.clear();
    const auto start = Clock::now();
    while (latencies_us.size() < 1000 || seconds_since(start) < seconds * rounds) one();
  }

  if (csv) {
    std::cout << "mode,batch,threads,images_per_second\n";
    for (const Cell& cell : cells)
      std::cout << (cell.training ? "train" : "infer") << ',' << cell.batch << ',' << cell.threads
                << ',' << format_rate(median(cell.rates)) << '\n';
    if (!latencies_us.empty())
      std::cout << "latency_median_us,1,1," << median(latencies_us) << "\nlatency_p99_us,1,1,"
                << percentile(latencies_us, 99) << '\n';
    std::cout << "peak_rss_mb,0,0," << peak_rss_mb() << "\nfresh_blocks,0,0," << fresh_blocks
              << '\n';
    return 0;
  }

  if (!cells.empty()) {
    std::cout << '\n' << std::left << std::setw(18) << "" << std::right;
    for (std::int64_t batch : batches)
      std::cout << std::setw(12) << ("batch " + std::to_string(batch));
    std::cout << '\n';
    for (std::size_t row = 0; row < cells.size(); row += batches.size()) {
      const Cell& first = cells[row];
      std::cout << std::left << std::setw(18)
                << (std::string(first.training ? "train" : "infer") + "  " +
                    std::to_string(first.threads) + (first.threads == 1 ? " thread" : " threads"))
                << std::right;
      for (std::size_t k = 0; k < batches.size(); ++k)
        std::cout << std::setw(12) << format_rate(median(cells[row + k].rates));
      std::cout << '\n';
    }
    std::cout << "(a batch smaller than the thread count runs on fewer threads)\n";
  }
  if (!latencies_us.empty())
    std::cout << std::fixed << std::setprecision(1)
              << "\nsingle image (inference, 1 thread): median " << median(latencies_us)
              << " us, p99 " << percentile(latencies_us, 99) << " us over " << latencies_us.size()
              << " runs\n";
  std::cout << std::fixed << std::setprecision(0) << "\npeak RSS " << peak_rss_mb()
            << " MB; tensor blocks taken from the system while timing: " << fresh_blocks << '\n';
  return 0;
}

}  // namespace cli
