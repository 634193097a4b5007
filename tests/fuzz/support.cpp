// The helpers the fuzz targets and their tests share. See targets.hpp.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include "tests/fuzz/targets.hpp"

namespace fuzz {

void check(bool holds, const char* target, const std::string& what) {
  if (!holds) throw PropertyViolation(std::string(target) + ": " + what);
}

bool cap_address_space(std::size_t extra_bytes) {
  long pages = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%ld", &pages) != 1) pages = 0;
    std::fclose(statm);
  }
  const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + extra_bytes;
  const rlimit cap{limit, limit};
  return pages > 0 && ::setrlimit(RLIMIT_AS, &cap) == 0;
}

}  // namespace fuzz
