// Subnormal floating-point numbers flushed to zero, for the threads that run the kernels.
#pragma once

namespace ag {

/// While alive, the calling thread treats subnormal inputs as zero and flushes subnormal results to
/// zero (x86's DAZ and FTZ modes), for float and double alike; threads it starts meanwhile inherit
/// the mode (POSIX threads inherit the floating-point environment). The previous mode comes back
/// when the guard ends.
///
/// Why: on Intel CPUs, arithmetic that meets a subnormal takes a microcode path about a hundred
/// times slower. A network that drives its loss towards 0 makes its gradients subnormal, and a
/// training step full of them runs tens of times slower (performance.md). Subnormals are
/// below 1.2e-38 in float32 (2.2e-308 in float64), where no weight or gradient carries anything:
/// TensorFlow flushes them in its threads too. The tools run under one guard; library code and the
/// tests leave the mode as they find it. On CPUs without these modes the guard does nothing.
class FlushSubnormalsGuard {
 public:
  FlushSubnormalsGuard();
  ~FlushSubnormalsGuard();
  FlushSubnormalsGuard(const FlushSubnormalsGuard&) = delete;
  FlushSubnormalsGuard& operator=(const FlushSubnormalsGuard&) = delete;

 private:
  unsigned previous_;  // the thread's control word before the guard
};

}  // namespace ag
