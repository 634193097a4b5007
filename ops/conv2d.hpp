// 2-d convolution (cross-correlation, as PyTorch), NCHW, with an optional connection table.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/variable.hpp"

namespace ag {

/// Which input channels each output channel of a convolution reads: the 1998 LeNet-5's Table I,
/// Torch7's SpatialConvolutionMap. The weights of a pair it leaves unconnected are read as zero and
/// get a zero gradient, and the kernels that can skip a pair spend no work on it. The default table
/// connects every pair. Copies share the table.
class ConnectionTable {
 public:
  ConnectionTable() = default;
  /// connected[o * in_channels + c]: whether output channel o reads input channel c. Throws
  /// std::invalid_argument if the sizes disagree or some output channel reads nothing.
  ConnectionTable(std::int64_t out_channels, std::int64_t in_channels, std::vector<bool> connected);

  bool all() const { return !table_; }  // every pair connected
  std::int64_t out_channels() const { return table_ ? table_->out_channels : 0; }
  std::int64_t in_channels() const { return table_ ? table_->in_channels : 0; }
  bool connects(std::int64_t o, std::int64_t c) const {
    return !table_ || table_->connected[static_cast<std::size_t>(o * table_->in_channels + c)];
  }
  /// The number of connected pairs, of out_channels * in_channels (for `all`, of the given sizes).
  std::int64_t pairs(std::int64_t out_channels, std::int64_t in_channels) const;

  /// Zeroes the [KH, KW] slices of w:[Cout, Cin, KH, KW] (a weight or its gradient) that the table
  /// does not connect, in place.
  void zero_unconnected(Tensor& w) const;
  /// The weights a convolution with this table reads: w itself when its unconnected slices are
  /// zero already (as a Conv2d layer keeps them), else a copy with them zeroed.
  Tensor connected(const Tensor& w) const;

 private:
  struct Table {
    std::int64_t out_channels, in_channels;
    std::vector<bool> connected;
  };
  std::shared_ptr<const Table> table_;
};

/// y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x_padded[n, c, i*stride + p, j*stride + q]
/// with zero padding; Ho = (H + 2 padding - KH) / stride + 1, likewise Wo.
/// x:[N, Cin, H, W]  w:[Cout, Cin, KH, KW]  b:[Cout] or undefined -> y:[N, Cout, Ho, Wo]
/// dx, dw, db are the adjoints of the same sums (col2im of w^T dy, dy x^T, sum of dy).
/// float32 or float64. Needs stride >= 1, padding >= 0, matching channels and a kernel no larger
/// than the padded input; otherwise throws std::invalid_argument("conv2d: ...") naming the shapes.
Variable conv2d(const Variable& x, const Variable& w, const Variable& b = {},
                std::int64_t stride = 1, std::int64_t padding = 0);

/// conv2d with the sum over c only over the input channels `connections` connects to o; dw is
/// zero off the table. The table must be [Cout, Cin] (or `all`).
Variable conv2d(const Variable& x, const Variable& w, const Variable& b,
                const ConnectionTable& connections, std::int64_t stride = 1,
                std::int64_t padding = 0);

}  // namespace ag
