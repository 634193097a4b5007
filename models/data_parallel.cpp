// DataParallel: persistent worker threads, one LeNet-5 replica each.
#include "models/data_parallel.hpp"

#include <algorithm>

#include "ops/loss.hpp"

namespace nn {

DataParallel::DataParallel(LeNet5& master, int threads) : master_(master) {
  for (int t = 1; t < threads; ++t) {
    ag::Generator unused(0);
    auto replica = std::make_unique<LeNet5>(unused);
    auto from = master.parameters();
    auto to = replica->parameters();
    for (std::size_t i = 0; i < from.size(); ++i) to[i].mutable_value() = from[i].value();
    replicas_.push_back(std::move(replica));
  }
  for (int s = 0; s < threads; ++s) parameters_.push_back(model(s).parameters());
  losses_.resize(static_cast<std::size_t>(threads));
  shard_predictions_.resize(static_cast<std::size_t>(threads));
  for (int t = 1; t < threads; ++t) workers_.emplace_back(&DataParallel::worker, this, t);
}

DataParallel::~DataParallel() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

namespace {
// About 25 microseconds of polling (a pause takes about 25 ns on Zen 4) before a thread sleeps.
constexpr int kSpins = 1000;
inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();  // lets the other hardware thread run, saves power while polling
#endif
}
}  // namespace

void DataParallel::worker(int index) {
  std::uint64_t seen = 0;
  for (;;) {
    std::uint64_t now = generation_.load(std::memory_order_acquire);
    for (int spin = 0; spin < kSpins && now == seen && !stopping_.load(std::memory_order_relaxed);
         ++spin) {
      pause();
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen && !stopping_) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock,
                 [&] { return stopping_ || generation_.load(std::memory_order_acquire) != seen; });
      now = generation_.load(std::memory_order_acquire);
    }
    if (stopping_) return;
    seen = now;
    if (index >= shards_) continue;  // not needed for this batch
    try {
      call_(work_, index, model(index));
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mutex_);  // so that the notification cannot fall between check and wait
      done_.notify_one();
    }
  }
}

void DataParallel::run_erased(int shards, void* work, Call call) {
  shards = std::clamp(shards, 1, threads());
  work_ = work, call_ = call, shards_ = shards, error_ = nullptr;
  busy_.store(shards - 1, std::memory_order_relaxed);
  if (shards > 1) {  // a one-shard batch leaves the workers alone
    {
      std::lock_guard lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
  }
  std::exception_ptr error;
  try {
    call(work, 0, master_);
  } catch (...) {
    error = std::current_exception();
  }
  for (int spin = 0; spin < kSpins && busy_.load(std::memory_order_acquire) != 0; ++spin) pause();
  if (busy_.load(std::memory_order_acquire) != 0) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return busy_.load(std::memory_order_acquire) == 0; });
  }
  std::lock_guard lock(mutex_);
  if (!error) error = error_;
  if (error) std::rethrow_exception(error);
}

double DataParallel::step(const std::vector<ag::Tensor>& images,
                          const std::vector<std::vector<std::int64_t>>& targets, int shards,
                          std::int64_t batch, std::vector<std::uint8_t>& predictions) {
  run(shards, [&](int shard, LeNet5& net) {
    const auto s = static_cast<std::size_t>(shard);
    net.zero_grad();
    const ag::Variable logp = net(ag::Variable(images[s]));
    const ag::Variable loss = ag::nll_loss(logp, targets[s]);
    // The predicted class of each example: the row's first maximum.
    const ag::Tensor& p = logp.value();
    const std::int64_t rows = p.size(0), classes = p.size(1);
    auto& out = shard_predictions_[s];
    out.resize(static_cast<std::size_t>(rows));
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* row = p.data<float>() + i * classes;
      out[static_cast<std::size_t>(i)] =
          static_cast<std::uint8_t>(std::max_element(row, row + classes) - row);
    }
    losses_[s] = loss.value().item();
    loss.backward();
  });
  // Each shard's gradient is of its own mean: weight by shard size to get the batch mean's.
  double loss = 0;
  predictions.clear();
  auto& master_params = parameters_[0];
  for (int shard = 0; shard < shards; ++shard) {
    const auto s = static_cast<std::size_t>(shard);
    const auto weight =
        static_cast<float>(static_cast<double>(targets[s].size()) / static_cast<double>(batch));
    loss += weight * losses_[s];
    predictions.insert(predictions.end(), shard_predictions_[s].begin(),
                       shard_predictions_[s].end());
    auto& params = parameters_[s];
    for (std::size_t k = 0; k < params.size(); ++k) {
      const float* g = params[k].grad().data<float>();
      float* sum = master_params[k].mutable_grad().data<float>();
      const std::int64_t count = params[k].value().numel();
      for (std::int64_t e = 0; e < count; ++e)
        sum[e] = shard == 0 ? weight * g[e] : sum[e] + weight * g[e];
    }
  }
  return loss;
}

}  // namespace nn
