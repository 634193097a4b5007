// Data parallelism for LeNet-5 on the CPU: one model replica per thread, threads that live as long
// as the object (a step hands them work instead of starting threads), gradients summed once per
// step in a fixed order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "autograd/tensor.hpp"
#include "models/lenet.hpp"

namespace nn {

/// Replicas share the master's parameter storage (so the optimiser's in-place update reaches all of
/// them) but keep their own gradients. The batch is split into contiguous shards, always the same
/// way, and shard gradients are summed in shard order, so a fixed seed and thread count reproduce a
/// run bit for bit.
class DataParallel {
 public:
  DataParallel(LeNet5& master, int threads);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int threads() const { return static_cast<int>(replicas_.size()) + 1; }

  /// Runs work(shard, model) for every shard < shards (at most threads()): shard 0 on the calling
  /// thread with the master, shard s on worker s with replica s. Returns when all are done;
  /// rethrows the first exception a shard threw.
  template <class Work>
  void run(int shards, Work&& work) {
    run_erased(shards, &work, [](void* w, int shard, LeNet5& model) {
      (*static_cast<std::remove_reference_t<Work>*>(w))(shard, model);
    });
  }

  /// Forward, loss and backward for one batch split into `shards` (images[s], targets[s]); leaves
  /// the gradient of the whole batch's mean loss in the master's parameters and returns that loss.
  /// Fills the predicted class of every example, in batch order.
  double step(const std::vector<ag::Tensor>& images,
              const std::vector<std::vector<std::int64_t>>& targets, int shards, std::int64_t batch,
              std::vector<std::uint8_t>& predictions);

 private:
  using Call = void (*)(void* work, int shard, LeNet5& model);
  void run_erased(int shards, void* work, Call call);
  void worker(int index);
  LeNet5& model(int shard) {
    return shard == 0 ? master_ : *replicas_[static_cast<std::size_t>(shard - 1)];
  }

  LeNet5& master_;
  std::vector<std::unique_ptr<LeNet5>> replicas_;
  std::vector<std::vector<ag::Variable>> parameters_;  // per shard, in named_parameters() order

  // Reused every step, so that a step allocates nothing.
  std::vector<double> losses_;
  std::vector<std::vector<std::uint8_t>> shard_predictions_;

  // The hand-off: a generation number that workers wait to change, the work, and a count of
  // workers still busy with it. Both sides spin briefly before sleeping on a condition variable:
  // waking a sleeping thread takes tens of microseconds, a few percent of a step.
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
