// libFuzzer entry point of the safetensors reader target (safetensors_target.cpp).
#include "tests/fuzz/targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::safetensors_input({data, size});  // the outcome does not matter here, only that it is clean
  return 0;
}
