// join_mpi_job for a build without MPI: a process mpirun started must not train alone on what
// it believes is the whole batch.
#include <cstdlib>

#include "models/train/communicator.hpp"

namespace nn {

bool built_with_mpi() { return false; }

std::unique_ptr<Communicator> join_mpi_job() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK"))
    throw std::runtime_error(
        "started by mpirun, but this build has no MPI: install libopenmpi-dev and run meson setup --reconfigure");
  return nullptr;
}

}  // namespace nn
