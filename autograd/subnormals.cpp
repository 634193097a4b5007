// FlushSubnormalsGuard: the DAZ and FTZ bits of the SSE/AVX control register, MXCSR.
#include "autograd/subnormals.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace ag {

#if defined(__x86_64__) || defined(__i386__)
namespace {
constexpr unsigned kFlushToZero = 0x8000;       // FTZ: subnormal results become 0
constexpr unsigned kDenormalsAreZero = 0x0040;  // DAZ: subnormal inputs read as 0
}  // namespace

FlushSubnormalsGuard::FlushSubnormalsGuard() : previous_(_mm_getcsr()) {
  _mm_setcsr(previous_ | kFlushToZero | kDenormalsAreZero);
}
FlushSubnormalsGuard::~FlushSubnormalsGuard() { _mm_setcsr(previous_); }
#else
FlushSubnormalsGuard::FlushSubnormalsGuard() : previous_(0) {}
FlushSubnormalsGuard::~FlushSubnormalsGuard() = default;
#endif

}  // namespace ag
