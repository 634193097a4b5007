// The op catalogue: every differentiable operation. Each op's forward and backward live together
// in the .cpp of its header; the comment on each declaration gives its formula and shapes.
#pragma once

#include "ops/activation.hpp"  // relu, tanh, scaled_tanh, sigmoid
#include "ops/arithmetic.hpp"  // add, sub, mul, div, neg, exp, log, pow, operators + - * /
#include "ops/conv2d.hpp"      // conv2d
#include "ops/distance.hpp"    // squared_distances
#include "ops/dropout.hpp"     // dropout
#include "ops/linear.hpp"      // matmul, linear
#include "ops/loss.hpp"        // nll_loss, cross_entropy
#include "ops/pool.hpp"        // max_pool2d, avg_pool2d, subsampling2d
#include "ops/reduce.hpp"      // sum, mean (all elements or over dims), logsumexp
#include "ops/shape.hpp"       // reshape, flatten, cat, transpose, pad2d
#include "ops/softmax.hpp"     // softmax, log_softmax
