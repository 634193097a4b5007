// join_mpi_job with OpenMPI: the job mpirun started, its ranks, and an allgather that gives up
// after the communicator's timeout instead of waiting forever for a rank that died.
#include <mpi.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "models/train/communicator.hpp"

namespace nn {

namespace {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

class MpiJob final : public Communicator {
 public:
  MpiJob() {
    // Shared memory between ranks on one machine without the single-copy mechanism (CMA): with
    // it, the death of one rank makes the others fail inside MPI with a message of its own,
    // before a collective can return the error. A setting of the user's own is kept.
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    // Only the thread that runs the training loop calls MPI; the data-parallel workers never do.
    int provided = 0;
    if (const int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided); code != MPI_SUCCESS)
      throw std::runtime_error("MPI failed to start: " + mpi_error_text(code));
    // Errors come back as codes (and become RankLost) rather than ending the process inside MPI
    // with a message of MPI's own.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
  }

  ~MpiJob() override {
    // After a lost rank MPI_Finalize would wait for it: end the job instead.
    if (lost_) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }

  void allgather(std::span<const std::byte> mine, std::span<std::byte> all) override {
    if (all.size() != mine.size() * static_cast<std::size_t>(size_))
      throw std::invalid_argument("allgather: " + std::to_string(all.size()) + " bytes to receive " +
                                  std::to_string(size_) + " ranks' " + std::to_string(mine.size()));
    if (mine.size() > static_cast<std::size_t>(INT32_MAX))
      throw std::invalid_argument("allgather: more than 2 GiB from one rank");
    const int count = static_cast<int>(mine.size());
    MPI_Request request;
    check(MPI_Iallgather(mine.data(), count, MPI_BYTE, all.data(), count, MPI_BYTE, MPI_COMM_WORLD, &request));
    // Polled rather than waited for, so that a rank that never comes is noticed. MPI moves a
    // large message in fragments, each needing a test to progress: the first 100 µs (an exchange
    // between ranks in step completes within them) test without pause, as MPI's own blocking
    // calls do; then each test first yields the CPU, which the rank being waited for may need
    // when ranks share cores (a yield with nothing else to run returns at once); after a second
    // (a rank is far behind, or gone) each test sleeps a millisecond.
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
      if (done) return;
      const auto waited = std::chrono::steady_clock::now() - start;
      if (interrupted()) {
        lost_ = true;
        throw RankLost("rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                       ": asked to stop while waiting for the other ranks (one of them died or was stopped)");
      }
      if (waited > timeout()) {
        lost_ = true;
        throw RankLost("rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                       ": no word from the other ranks for " +
                       std::to_string(std::chrono::duration_cast<std::chrono::seconds>(waited).count()) +
                       " s (one has stopped or is unreachable)");
      }
      if (waited > std::chrono::seconds(1)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      else if (waited > std::chrono::microseconds(100)) std::this_thread::yield();
    }
  }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
  }

 private:
  void check(int code) {
    if (code == MPI_SUCCESS) return;
    lost_ = true;
    throw RankLost("rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                   ": the exchange between ranks failed (" + mpi_error_text(code) + ")");
  }

  int rank_ = 0, size_ = 1, local_size_ = 1;
  bool lost_ = false;
};

}  // namespace

bool built_with_mpi() { return true; }

std::unique_ptr<Communicator> join_mpi_job() {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMIX_RANK")) return nullptr;
  return std::make_unique<MpiJob>();
}

}  // namespace nn
