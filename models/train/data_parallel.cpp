// DataParallel: persistent worker threads, one model replica each, and the training step that
// splits its work over them.
#include "models/train/data_parallel.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

namespace nn {

namespace {

// Points each of `to`'s Variables at the storage of the same-named one of `from`.
void share_tensors(const NamedParameters& from, const NamedParameters& to) {
  if (from.size() != to.size())
    ag::fail("DataParallel", "a replica has " + std::to_string(to.size()) + " tensors where the master has " +
                                 std::to_string(from.size()));
  for (std::size_t i = 0; i < from.size(); ++i) {
    if (from[i].first != to[i].first || from[i].second.shape() != to[i].second.shape())
      ag::fail("DataParallel", "the replica's " + to[i].first + " does not match the master's " + from[i].first);
    ag::Variable replica = to[i].second;
    replica.mutable_value() = from[i].second.value();
  }
}

}  // namespace

DataParallel::DataParallel(Model& master, const ModelFactory& make_replica, int threads)
    : master_(master), ranges_(master.parameters()) {
  for (int t = 1; t < threads; ++t) {
    std::unique_ptr<Model> replica = make_replica();
    share_tensors(master.named_parameters(), replica->named_parameters());
    share_tensors(master.named_buffers(), replica->named_buffers());
    replica->train(master.is_training());
    replicas_.push_back(std::move(replica));
  }
  for (int s = 0; s < threads; ++s) parameters_.push_back(model(s).parameters());
  const auto n = static_cast<std::size_t>(threads);
  // An empty placeholder until the first fill replaces it with a batch.
  for (std::size_t s = 0; s < n; ++s) inputs_.emplace_back(ag::Tensor(ag::Shape{0}));
  targets_.resize(n);
  losses_.resize(n);
  weights_.resize(n);
  shard_predictions_.resize(n);
  finite_.resize(n);
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

// How long a thread polls for its next hand-off before it sleeps. The shards of a step finish
// tens to hundreds of microseconds apart on a shared machine, and waking a sleeping thread (a
// halted vCPU) takes tens of microseconds, several times the work of a short hand-off such as
// the gradient sum: a budget much shorter than the gap between shards lets hand-offs sleep. A
// budget much longer costs more than it saves when the CPU is shared with another process: the
// thread spends its share of the CPU on polling and is then preempted in the middle of its shard,
// for a whole time slice. 100 µs covers the usual gap and stays far below a time slice; on a
// quiet machine a longer budget gains nothing.
constexpr std::chrono::microseconds kPollBudget{100};

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();  // lets the other hardware thread run, saves power while polling
#endif
}

// Polls done() until it is true or kPollBudget has passed; returns its last value.
template <class Done>
bool poll(Done&& done) {
  const auto deadline = std::chrono::steady_clock::now() + kPollBudget;
  for (;;) {
    for (int k = 0; k < 64; ++k) {  // about 1.6 µs of pauses between clock reads
      if (done()) return true;
      pause();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

}  // namespace

void DataParallel::worker(int index) {
  std::uint64_t seen = 0;
  for (;;) {
    std::uint64_t now = seen;
    const bool handed = poll([&] {
      now = generation_.load(std::memory_order_acquire);
      return now != seen || stopping_.load(std::memory_order_relaxed);
    });
    if (!handed) {
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
  // Replicas follow the master into training or evaluation mode (dropout looks at it).
  for (auto& replica : replicas_)
    if (replica->is_training() != master_.is_training()) replica->train(master_.is_training());
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
  if (!poll([&] { return busy_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return busy_.load(std::memory_order_acquire) == 0; });
  }
  std::lock_guard lock(mutex_);
  if (!error) error = error_;
  if (error) std::rethrow_exception(error);
}

int DataParallel::shards(std::int64_t batch) const {
  return static_cast<int>(std::clamp<std::int64_t>(batch, 1, threads()));
}

void DataParallel::forward_backward(int shard, Model& net, std::uint64_t seed) {
  const auto s = static_cast<std::size_t>(shard);
  ag::Generator generator(ag::mix_seed(seed ^ ag::mix_seed(static_cast<std::uint64_t>(shard))));
  const ag::GeneratorScope random(generator);
  net.zero_grad();
  const ag::Variable output = net(inputs_[s]);
  const ag::Variable loss = net.loss(output, targets_[s]);
  {
    ag::NoGradGuard no_grad;
    argmax_rows(net.log_probabilities(output).value(), shard_predictions_[s]);
  }
  losses_[s] = loss.value().item();
  loss.backward();
}

namespace {

// Whether all of x[0, n) are finite. Infinities and NaNs are the values whose exponent bits are all
// ones: the largest exponent field says, and an integer maximum vectorises where std::isfinite in a
// loop does not.
template <class T>
bool all_finite(const T* x, std::int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr Bits exponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits largest = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, x + i, sizeof bits);
    largest = std::max<Bits>(largest, bits & exponent);
  }
  return largest != exponent;
}

}  // namespace

bool DataParallel::sum_gradients(int shards, std::int64_t begin, std::int64_t end) {
  bool finite = true;
  ranges_.for_each_part(begin, end, [&](std::size_t k, std::int64_t from, std::int64_t to) {
    ag::Tensor& sum_tensor = parameters_[0][k].mutable_grad();
    ag::dispatch(sum_tensor.dtype(), [&]<class T>() {
      T* sum = sum_tensor.data<T>();
      if (shards > 1) {
        // Shard 0's gradient is the master's own: scale it in place, then add the others in shard
        // order. Each element sees the same operations in the same order on any thread.
        const auto weight = static_cast<T>(weights_[0]);
        for (std::int64_t e = from; e < to; ++e) sum[e] = weight * sum[e];
        for (std::size_t s = 1; s < static_cast<std::size_t>(shards); ++s) {
          const T* g = parameters_[s][k].grad().data<T>();
          const auto w = static_cast<T>(weights_[s]);
          for (std::int64_t e = from; e < to; ++e) sum[e] = sum[e] + w * g[e];
        }
      }
      finite = all_finite(sum + from, to - from) && finite;
    });
  });
  return finite;
}

DataParallel::StepResult DataParallel::step_erased(std::int64_t batch, void* fill, FillCall call,
                                                   Optimizer& optimizer,
                                                   std::vector<std::uint8_t>& predictions,
                                                   std::uint64_t seed) {
  if (batch < 1) ag::fail("DataParallel::step", "batch must be positive, got " + std::to_string(batch));
  const int shards = this->shards(batch);
  run(shards, [&](int shard, Model& net) {
    const auto s = static_cast<std::size_t>(shard);
    const std::int64_t begin = batch * shard / shards, end = batch * (shard + 1) / shards;
    call(fill, begin, end, inputs_[s].mutable_value(), targets_[s]);
    if (static_cast<std::int64_t>(targets_[s].size()) != end - begin)
      ag::fail("DataParallel::step", "fill gave " + std::to_string(targets_[s].size()) +
                                         " targets for examples [" + std::to_string(begin) + ", " +
                                         std::to_string(end) + ")");
    forward_backward(shard, net, seed);
  });
  // Each shard's gradient is of its own mean: weight by shard size to get the batch mean's.
  StepResult result;
  predictions.clear();
  for (std::size_t s = 0; s < static_cast<std::size_t>(shards); ++s) {
    weights_[s] = static_cast<float>(static_cast<double>(targets_[s].size()) / static_cast<double>(batch));
    result.loss += weights_[s] * losses_[s];
    predictions.insert(predictions.end(), shard_predictions_[s].begin(), shard_predictions_[s].end());
  }

  const std::int64_t elements = ranges_.numel();
  run(shards, [&](int part, Model&) {
    finite_[static_cast<std::size_t>(part)] =
        sum_gradients(shards, elements * part / shards, elements * (part + 1) / shards);
  });
  result.updated = std::isfinite(result.loss) &&
                   std::all_of(finite_.begin(), finite_.begin() + shards, [](char f) { return f != 0; });
  if (!result.updated) return result;

  optimizer.begin_step();
  const std::int64_t total = optimizer.numel();
  run(shards, [&](int part, Model&) {
    optimizer.update(total * part / shards, total * (part + 1) / shards);
  });
  return result;
}

}  // namespace nn
