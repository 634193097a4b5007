// lenet serve: TODO(in progress) — being written.
#include <stdexcept>

#include "tools/cli.hpp"

namespace cli {

int serve(const std::vector<std::string>&) { throw std::runtime_error("serve is not built yet"); }

}  // namespace cli
