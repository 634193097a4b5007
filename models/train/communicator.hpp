// The processes a training run is spread over (ranks, as MPI calls them) and the one collective
// operation data parallelism across them needs: every rank's bytes to every rank, in rank order.
// DataParallel combines gradients with it in a fixed order, so that N ranks of T threads compute
// exactly what one process of N x T threads does (docs/distributed.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn {

/// What a collective operation throws when it cannot complete: another rank died, stopped
/// answering, or the transport failed. The message is one line saying which and how long it waited.
class RankLost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  /// This process's index among size() ranks.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// How many ranks run on this machine (this one included): they share its cores.
  virtual int local_size() const = 0;

  /// Every rank passes `mine`, of the same size on every rank; `all` (size() times as large)
  /// receives every rank's bytes in rank order. Throws RankLost when the other ranks have not all
  /// answered within timeout().
  virtual void allgather(std::span<const std::byte> mine, std::span<std::byte> all) = 0;

  /// Ends every rank of the job at once with exit code `code`: what a rank does after an error
  /// the others may not share (they would otherwise wait for it until their timeout).
  [[noreturn]] virtual void abort(int code) = 0;

  /// How long a collective operation waits for the slowest rank before it gives up.
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  /// A collective operation also gives up (RankLost) as soon as `stop` returns true while it
  /// waits: when mpirun ends a job after one rank died, the others are still waiting for it.
  void set_interrupt(std::function<bool()> stop) { interrupt_ = std::move(stop); }
  bool interrupted() const { return interrupt_ && interrupt_(); }

 private:
  std::chrono::milliseconds timeout_{std::chrono::seconds(20)};
  std::function<bool()> interrupt_;
};

/// Whether any rank passed true.
bool any_rank(Communicator& communicator, bool mine);

/// Each rank's value, in rank order.
std::vector<std::uint64_t> gather_values(Communicator& communicator, std::uint64_t mine);

/// The MPI job this process was started in by mpirun, or null when it was started on its own
/// (then nothing of MPI is touched). Initialises MPI on the first call; the job ends when the
/// returned object is destroyed. Throws std::runtime_error if mpirun started this process but the
/// build has no MPI, or MPI fails to start.
std::unique_ptr<Communicator> join_mpi_job();

/// Whether this build can run under mpirun.
bool built_with_mpi();

}  // namespace nn
