// The one helper the fuzz targets share. See targets.hpp.
#include "tests/fuzz/targets.hpp"

namespace fuzz {

void check(bool holds, const char* target, const std::string& what) {
  if (!holds) throw PropertyViolation(std::string(target) + ": " + what);
}

}  // namespace fuzz
