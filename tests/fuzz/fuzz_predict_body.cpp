// libFuzzer entry point of the /api/predict body parser target (predict_body_target.cpp).
#include "tests/fuzz/targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::predict_body_input({data, size});  // the outcome does not matter here, only that it is clean
  return 0;
}
