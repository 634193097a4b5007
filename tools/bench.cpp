// lenet bench: TODO(in progress) — being written.
#include <stdexcept>

#include "tools/cli.hpp"

namespace cli {

int bench(const std::vector<std::string>&) { throw std::runtime_error("bench is not built yet"); }

}  // namespace cli
