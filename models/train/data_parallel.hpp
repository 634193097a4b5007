// Data parallelism on the CPU for any Model: one model replica per thread, threads that live as long
// as the object (a step hands them work instead of starting threads), and a training step whose
// every part runs on all threads: batch filling, forward and backward by shard, then the gradient
// sum and the optimiser update by element range. Across processes (MPI ranks, communicator.hpp)
// each rank runs its share of the shards and the shards' gradients are exchanged before the sum.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "autograd/tensor.hpp"
#include "models/model.hpp"
#include "models/nn/optim.hpp"
#include "models/train/communicator.hpp"

namespace nn {

/// Makes a new model of the master's kind (its parameter values do not matter: replicas take the
/// master's).
using ModelFactory = std::function<std::unique_ptr<Model>()>;

/// The ModelFactory of a model type constructed from a generator.
template <class M>
ModelFactory factory_of() {
  return [] {
    ag::Generator unused(0);
    return std::unique_ptr<Model>(std::make_unique<M>(unused));
  };
}

/// Replicas share the master's parameter and buffer storage (so the optimiser's in-place update reaches all of
/// them) but keep their own gradients. A batch is split into contiguous shards, always the same way,
/// and each element's gradient is summed over the shards in shard order, whichever thread sums it,
/// so a fixed seed and thread count reproduce a run bit for bit. A steady step allocates nothing
/// here: the batch buffers, losses and predictions are reused.
///
/// With a communicator of N ranks, each running a DataParallel of T threads over a master that
/// starts from the same parameters, a batch is split into the shards of N x T threads and rank r
/// computes shards [r T, (r + 1) T). Every rank receives every shard's gradient, sums them in shard
/// order and applies the same update: the ranks stay identical, and end on exactly the weights of
/// one process of N x T threads.
class DataParallel {
 public:
  DataParallel(Model& master, const ModelFactory& make_replica, int threads, Communicator* ranks = nullptr);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int threads() const { return static_cast<int>(replicas_.size()) + 1; }
  /// The ranks a step is spread over (1 without a communicator) and this process's index.
  int ranks() const { return ranks_ ? ranks_->size() : 1; }
  int rank() const { return ranks_ ? ranks_->rank() : 0; }

  /// How a training batch of `batch` examples is split: min(ranks() x threads(), batch) shards (at
  /// least 1), shard s holding examples [batch * s / shards, batch * (s + 1) / shards).
  int shards(std::int64_t batch) const;

  Model& master() { return master_; }

  /// Across ranks: what the steps so far spent exchanging gradients (waiting for the slowest rank
  /// included), and how many bytes each rank sends per step.
  struct ExchangeStats {
    std::int64_t steps = 0;
    double seconds = 0;
    std::size_t bytes_per_rank = 0;  // of the last step
  };
  const ExchangeStats& exchange_stats() const { return exchange_stats_; }

  /// Runs work(shard, model) for every shard < shards (at most threads()): shard 0 on the calling
  /// thread with the master, shard s on worker s with replica s. Returns when all are done;
  /// rethrows the first exception a shard threw.
  template <class Work>
  void run(int shards, Work&& work) {
    run_erased(shards, &work, [](void* w, int shard, Model& model) {
      (*static_cast<std::remove_reference_t<Work>*>(w))(shard, model);
    });
  }

  struct StepResult {
    double loss = 0;       // the whole batch's mean loss
    bool updated = false;  // false if the loss or a gradient was not finite: parameters untouched
  };

  /// One training step on a batch of `batch` examples (the whole batch: across ranks, every rank
  /// passes the same batch and fill, and computes its own shards of it). On each shard's thread:
  /// fill(begin, end, images, targets) writes examples [begin, end) of the batch into the shard's
  /// buffers (images:[end - begin, C, H, W] as the model's input(), targets:[end - begin]; reused,
  /// so keep them in place), then forward, the model's loss and backward. Random draws inside the
  /// forward (dropout) come from a generator of the shard's own, seeded by `seed` and the shard's
  /// index, so that they do not depend on which thread runs the shard. Then, split by element range over the threads, the
  /// shards' gradients are summed into the master's (each weighted by its share of the batch: the
  /// gradient of the whole batch's mean loss) and checked to be finite, and optimizer.update()
  /// applies the step (optimizer.begin_step() runs on the calling thread in between). fill runs
  /// concurrently for different shards. Fills `predictions` with the predicted class of every
  /// example, in batch order.
  template <class Fill>
  StepResult step(std::int64_t batch, Fill&& fill, Optimizer& optimizer,
                  std::vector<std::uint8_t>& predictions, std::uint64_t seed = 0) {
    // The callable's address without its constness; the call casts it back to its own type.
    void* erased = const_cast<void*>(static_cast<const void*>(std::addressof(fill)));
    return step_erased(batch, erased,
                       [](void* f, std::int64_t begin, std::int64_t end, ag::Tensor& images,
                          std::vector<std::int64_t>& targets) {
                         (*static_cast<std::remove_reference_t<Fill>*>(f))(begin, end, images,
                                                                            targets);
                       },
                       optimizer, predictions, seed);
  }

 private:
  using Call = void (*)(void* work, int shard, Model& model);
  using FillCall = void (*)(void* fill, std::int64_t begin, std::int64_t end, ag::Tensor& images,
                            std::vector<std::int64_t>& targets);
  void run_erased(int shards, void* work, Call call);
  void worker(int index);
  StepResult step_erased(std::int64_t batch, void* fill, FillCall call, Optimizer& optimizer,
                         std::vector<std::uint8_t>& predictions, std::uint64_t seed);
  // Forward, loss and backward of batch shard `shard` on local shard `local` (its thread, model
  // and buffers); fills its losses_ and shard_predictions_ entries.
  void forward_backward(int local, int shard, Model& net, std::uint64_t seed);
  // Sums the shards' gradients into the master's over elements [begin, end) of all parameters
  // laid end to end; false if a sum is not finite. The gradient of shard s is local shard s's, or
  // with ranks, the exchanged one (shard_gradient).
  bool sum_gradients(int shards, std::int64_t begin, std::int64_t end);
  // Across ranks: every rank's local losses, predictions and gradients to every rank. Local shard
  // s's record is written by its own thread (pack_shard); exchange() sends them all.
  void pack_shard(int local, std::int64_t shard_size, std::int64_t max_shard_size);
  void exchange(std::int64_t max_shard_size);
  const std::byte* shard_gradient(int shard, std::size_t parameter) const;
  Model& model(int shard) {
    return shard == 0 ? master_ : *replicas_[static_cast<std::size_t>(shard - 1)];
  }

  Model& master_;
  Communicator* ranks_;
  std::vector<std::unique_ptr<Model>> replicas_;
  std::vector<std::vector<ag::Variable>> parameters_;  // per shard, in named_parameters() order
  ElementRanges ranges_;  // of the master's parameters, for the gradient sum

  // Per shard, reused every step, so that a step allocates nothing. The images are the value of a
  // leaf Variable kept from step to step and filled in place (a new Variable, or a copy of the
  // Tensor with its shape, would allocate).
  std::vector<ag::Variable> inputs_;
  std::vector<std::vector<std::int64_t>> targets_;
  std::vector<double> losses_;
  std::vector<float> weights_;  // shard size / batch size
  std::vector<std::vector<std::uint8_t>> shard_predictions_;
  std::vector<char> finite_;  // per element range of the gradient sum

  // The exchange across ranks. A rank's record holds, per local shard (threads() of them, the
  // unused ones left as they are): its gradients laid end to end (gradient_bytes_), its loss, and
  // its predictions (max_shard_size bytes).
  std::vector<std::size_t> gradient_offsets_;  // bytes, per parameter
  std::size_t gradient_bytes_ = 0;
  std::size_t record_bytes_ = 0;
  std::vector<std::byte> sent_, received_;      // one record; ranks() records
  std::vector<double> all_losses_;               // per batch shard
  ExchangeStats exchange_stats_;

  // The hand-off: a generation number that workers wait to change, the work, and a count of
  // workers still busy with it. Both sides poll for up to 100 µs before sleeping on a condition
  // variable: waking a sleeping thread takes tens of microseconds, a few percent of a step, but a
  // thread polling longer on a CPU it shares loses the CPU in the middle of its shard
  // (data_parallel.cpp, kPollBudget).
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> busy_{0};
  std::atomic<bool> stopping_{false};
  int shards_ = 0;
  void* work_ = nullptr;
  Call call_ = nullptr;
  std::exception_ptr error_;
  std::vector<std::thread> workers_;
};

}  // namespace nn
