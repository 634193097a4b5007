// The collectives every Communicator gets from allgather.
#include "models/train/communicator.hpp"

#include <cstring>

namespace nn {

bool any_rank(Communicator& communicator, bool mine) {
  const auto flag = static_cast<std::byte>(mine);
  std::vector<std::byte> all(static_cast<std::size_t>(communicator.size()));
  communicator.allgather(std::span(&flag, 1), all);
  for (const std::byte b : all)
    if (b != std::byte{0}) return true;
  return false;
}

std::vector<std::uint64_t> gather_values(Communicator& communicator, std::uint64_t mine) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(communicator.size()));
  communicator.allgather(std::as_bytes(std::span(&mine, 1)), std::as_writable_bytes(std::span(all)));
  return all;
}

}  // namespace nn
