// AVX-512 kernels of the fused convolution + relu + max-pool (float32). TODO(in progress)
#include "ops/kernels/conv_pool.hpp"

namespace ag::kernels {

bool conv_pool_forward_avx512(const ConvGeometry&, const PoolGeometry&, const float*, const float*,
                              const float*, float*, std::uint8_t*) {
  return false;
}

bool conv_pool_backward_avx512(const ConvGeometry&, const PoolGeometry&, const float*, const float*,
                               const float*, const std::uint8_t*, float*, float*, float*) {
  return false;
}

}  // namespace ag::kernels
