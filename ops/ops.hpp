// The op catalogue: every differentiable operation. Each op's forward and backward live together
// in the .cpp of its header; the comment on each declaration gives its formula and shapes.
#pragma once

#include "ops/activation.hpp"  // relu
#include "ops/arithmetic.hpp"  // add, mul, sum, mean
#include "ops/conv2d.hpp"      // conv2d
#include "ops/linear.hpp"      // matmul, linear
#include "ops/loss.hpp"        // nll_loss
#include "ops/pool.hpp"        // max_pool2d
#include "ops/shape.hpp"       // reshape, flatten
#include "ops/softmax.hpp"     // log_softmax
