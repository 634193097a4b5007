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

DataParallel::DataParallel(Model& master, const ModelFactory& make_replica, int threads, Communicator* ranks)
    : master_(master), ranks_(ranks && ranks->size() > 1 ? ranks : nullptr), ranges_(master.parameters()) {
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
  weights_.resize(n * static_cast<std::size_t>(this->ranks()));
  all_losses_.resize(weights_.size());
  shard_predictions_.resize(n);
  finite_.resize(n);
  for (const ag::Variable& parameter : parameters_[0]) {
    gradient_offsets_.push_back(gradient_bytes_);
    gradient_bytes_ += parameter.value().nbytes();
  }
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
  return static_cast<int>(std::clamp<std::int64_t>(batch, 1, std::int64_t{threads()} * ranks()));
}

void DataParallel::forward_backward(int local, int shard, Model& net, std::uint64_t seed) {
  const auto s = static_cast<std::size_t>(local);
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

namespace {

// A slot of the exchange record: one shard's gradients, its loss and its predictions, padded so
// that the next slot's gradients are aligned for any element type.
std::size_t slot_bytes(std::size_t gradient_bytes, std::int64_t max_shard_size) {
  const std::size_t bytes = gradient_bytes + sizeof(double) + static_cast<std::size_t>(max_shard_size);
  return (bytes + 63) / 64 * 64;
}

}  // namespace

void DataParallel::pack_shard(int local, std::int64_t shard_size, std::int64_t max_shard_size) {
  const auto s = static_cast<std::size_t>(local);
  std::byte* slot = sent_.data() + s * slot_bytes(gradient_bytes_, max_shard_size);
  for (std::size_t k = 0; k < parameters_[s].size(); ++k) {
    const ag::Tensor& g = parameters_[s][k].grad();
    std::memcpy(slot + gradient_offsets_[k], g.raw_data(), g.nbytes());
  }
  std::memcpy(slot + gradient_bytes_, &losses_[s], sizeof(double));
  std::memcpy(slot + gradient_bytes_ + sizeof(double), shard_predictions_[s].data(), static_cast<std::size_t>(shard_size));
}

void DataParallel::exchange(std::int64_t max_shard_size) {
  const std::size_t record = static_cast<std::size_t>(threads()) * slot_bytes(gradient_bytes_, max_shard_size);
  const auto start = std::chrono::steady_clock::now();
  ranks_->allgather(std::span(sent_).first(record), std::span(received_).first(record * static_cast<std::size_t>(ranks())));
  exchange_stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++exchange_stats_.steps;
  exchange_stats_.bytes_per_rank = record;
}

const std::byte* DataParallel::shard_gradient(int shard, std::size_t parameter) const {
  return received_.data() + static_cast<std::size_t>(shard) * record_bytes_ / static_cast<std::size_t>(threads()) +
         gradient_offsets_[parameter];
}

bool DataParallel::sum_gradients(int shards, std::int64_t begin, std::int64_t end) {
  bool finite = true;
  ranges_.for_each_part(begin, end, [&](std::size_t k, std::int64_t from, std::int64_t to) {
    ag::Tensor& sum_tensor = parameters_[0][k].mutable_grad();
    ag::dispatch(sum_tensor.dtype(), [&]<class T>() {
      const auto gradient = [&](int s) {
        return ranks_ ? reinterpret_cast<const T*>(shard_gradient(s, k))
                      : parameters_[static_cast<std::size_t>(s)][k].grad().template data<T>();
      };
      T* sum = sum_tensor.data<T>();
      if (shards > 1 || ranks_) {
        // Shard 0's gradient (the master's own, or the exchanged one) scaled, then the others added
        // in shard order. Each element sees the same operations in the same order on any thread
        // and any rank.
        const T* first = gradient(0);
        const auto weight = static_cast<T>(weights_[0]);
        for (std::int64_t e = from; e < to; ++e) sum[e] = weight * first[e];
        for (int s = 1; s < shards; ++s) {
          const T* g = gradient(s);
          const auto w = static_cast<T>(weights_[static_cast<std::size_t>(s)]);
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
  // This rank's shards: [first, first + local).
  const int first = rank() * threads();
  const int local = std::clamp(shards - first, 0, threads());
  const std::int64_t max_shard_size = (batch + shards - 1) / shards;
  if (ranks_) {
    // Grows to the largest batch seen, then stays: a steady step allocates nothing.
    record_bytes_ = static_cast<std::size_t>(threads()) * slot_bytes(gradient_bytes_, max_shard_size);
    if (sent_.size() < record_bytes_) sent_.resize(record_bytes_);
    if (received_.size() < record_bytes_ * static_cast<std::size_t>(ranks()))
      received_.resize(record_bytes_ * static_cast<std::size_t>(ranks()));
  }
  if (local > 0)
    run(local, [&](int i, Model& net) {
      const auto s = static_cast<std::size_t>(i);
      const int shard = first + i;
      const std::int64_t begin = batch * shard / shards, end = batch * (shard + 1) / shards;
      call(fill, begin, end, inputs_[s].mutable_value(), targets_[s]);
      if (static_cast<std::int64_t>(targets_[s].size()) != end - begin)
        ag::fail("DataParallel::step", "fill gave " + std::to_string(targets_[s].size()) +
                                           " targets for examples [" + std::to_string(begin) + ", " +
                                           std::to_string(end) + ")");
      forward_backward(i, shard, net, seed);
      if (ranks_) pack_shard(i, end - begin, max_shard_size);
    });
  if (ranks_) exchange(max_shard_size);

  // Each shard's gradient is of its own mean: weight by shard size to get the batch mean's.
  StepResult result;
  predictions.clear();
  for (int s = 0; s < shards; ++s) {
    const auto g = static_cast<std::size_t>(s);
    const std::int64_t size = batch * (s + 1) / shards - batch * s / shards;
    weights_[g] = static_cast<float>(static_cast<double>(size) / static_cast<double>(batch));
    if (ranks_) {
      const std::byte* slot = received_.data() + g * record_bytes_ / static_cast<std::size_t>(threads()) + gradient_bytes_;
      std::memcpy(&all_losses_[g], slot, sizeof(double));
      const auto* shard_predictions = reinterpret_cast<const std::uint8_t*>(slot + sizeof(double));
      predictions.insert(predictions.end(), shard_predictions, shard_predictions + size);
    } else {
      all_losses_[g] = losses_[g];
      predictions.insert(predictions.end(), shard_predictions_[g].begin(), shard_predictions_[g].end());
    }
    result.loss += weights_[g] * all_losses_[g];
  }

  // A rank without a shard of this batch has not run a backward: give its master gradients to
  // sum into.
  if (local == 0)
    for (ag::Variable& parameter : parameters_[0])
      if (!parameter.has_grad()) parameter.mutable_grad() = ag::Tensor::zeros(parameter.shape(), parameter.dtype());

  // The sum and the update are split by element range over this rank's threads.
  const int parts = ranks_ ? threads() : shards;
  const std::int64_t elements = ranges_.numel();
  run(parts, [&](int part, Model&) {
    finite_[static_cast<std::size_t>(part)] =
        sum_gradients(shards, elements * part / parts, elements * (part + 1) / parts);
  });
  result.updated = std::isfinite(result.loss) &&
                   std::all_of(finite_.begin(), finite_.begin() + parts, [](char f) { return f != 0; });
  if (!result.updated) return result;

  optimizer.begin_step();
  const std::int64_t total = optimizer.numel();
  run(parts, [&](int part, Model&) {
    optimizer.update(total * part / parts, total * (part + 1) / parts);
  });
  return result;
}

}  // namespace nn
