// The 1998 LeNet-5: its layers, Table I, the prototypes of Fig. 3, its initialisation and its
// two criteria.
#include "models/lenet1998.hpp"

#include <array>
#include <cmath>

#include "ops/ops.hpp"

namespace nn {

namespace {

// f(a) = 1.7159 tanh(2a / 3) (appendix A): f(1) = 1, f(-1) = -1.
ag::Variable squash(const ag::Variable& a) { return ag::scaled_tanh(a, 1.7159, 2.0 / 3.0); }

// Table I: which S2 maps (rows) feed each C3 map (columns).
constexpr std::array<const char*, 6> kTableI{
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
};

// Fig. 3's prototypes, 7 columns by 12 rows each, flattened row by row into 84 components.
constexpr const char* kPrototypes[10][12] = {
    {".#####.", ".......", "..###..", ".##.##.", "##...##", "##...##", "##...##", "##...##", ".##.##.", "..###..", ".......", "......."},  // 0
    {"...##..", "..###..", ".####..", "...##..", "...##..", "...##..", "...##..", "...##..", "...##..", ".######", ".......", "......."},  // 1
    {".#####.", ".......", ".#####.", "##...##", "#....##", "....##.", "..###..", ".##....", "##.....", "#######", ".......", "......."},  // 2
    {"#######", ".....##", "....##.", "...##..", "..####.", ".....##", ".....##", ".....##", "##...##", ".#####.", ".......", "......."},  // 3
    {".#####.", ".......", ".......", ".##..##", ".##..##", "###..##", "##...##", "##...##", "##..###", ".######", ".....##", ".....##"},  // 4
    {".#####.", ".......", "#######", "##.....", "##.....", ".####..", "..####.", ".....##", "##...##", ".#####.", ".......", "......."},  // 5
    {"..####.", ".##....", "##.....", "##.....", "######.", "###..##", "##...##", "##...##", "###..##", ".#####.", ".......", "......."},  // 6
    {"#######", ".....##", ".....##", "....##.", "...##..", "...##..", "..##...", "..##...", "..##...", "..##...", ".......", "......."},  // 7
    {".#####.", "##...##", "##...##", "##...##", ".#####.", "##...##", "##...##", "##...##", "##...##", ".#####.", ".......", "......."},  // 8
    {".#####.", "##..###", "##...##", "##...##", "##..###", ".######", ".....##", ".....##", "....##.", ".####..", ".......", "......."},  // 9
};

// Uniform in [-2.4 / sqrt(F), 2.4 / sqrt(F)], F the unit's fan-in. Appendix A writes 2.4 / F,
// under which each layer shrinks its input's scale by about sqrt(F): the curvature before the first
// pass is then about zero below F6 and SDLM at the paper's rates diverges (docs/lenet1998.md).
ag::Tensor paper_uniform(ag::Shape shape, double fan_in, ag::Generator& gen) {
  return ag::Tensor::uniform(std::move(shape), -2.4 / std::sqrt(fan_in), 2.4 / std::sqrt(fan_in), gen);
}

// Table I as C3's connection table: C3 map o reads S2 map c.
ag::ConnectionTable table_i() {
  std::vector<bool> connected;
  for (std::int64_t o = 0; o < 16; ++o)
    for (const char* row : kTableI) connected.push_back(row[o] == 'X');
  return ag::ConnectionTable(16, 6, std::move(connected));
}

std::int64_t table_connections(std::int64_t map) {
  std::int64_t n = 0;
  for (const char* row : kTableI) n += row[map] == 'X';
  return n;
}

}  // namespace

Subsampling::Subsampling(std::int64_t channels) {
  // The paper gives no initial coefficients or biases: 1 makes each unit the plain sum of its
  // window at the start, and 0 centres it.
  weight = register_parameter("weight", ag::Tensor::full({channels}, 1.0));
  bias = register_parameter("bias", ag::Tensor::zeros({channels}));
}

ag::Variable Subsampling::forward(const ag::Variable& x) const {
  return ag::subsampling2d(x, weight, bias, 2);  // [N, C, H/2, W/2]
}

LeNet1998::RbfPrototypes::RbfPrototypes() {
  std::vector<double> values;
  for (const auto& digit : kPrototypes)
    for (const char* row : digit)
      for (int col = 0; col < 7; ++col) values.push_back(row[col] == '#' ? 1.0 : -1.0);
  centers = register_buffer("centers", ag::Tensor::from({10, 84}, values));
}

LeNet1998::LeNet1998(ag::Generator& gen, Criterion criterion)
    // Background -0.1 and ink 1.175 (p. 7): (p / 255 - mean) / std = -0.1 + 1.275 p / 255.
    : Model({.channels = 1, .height = 28, .width = 28,
             .normalization = {.mean = 0.1 / 1.275, .std = 1 / 1.275}}),
      c1({.in = 1, .out = 6, .kernel = 5}, gen),
      s2(6),
      c3({.in = 6, .out = 16, .kernel = 5, .connections = table_i()}, gen),
      s4(16),
      c5({.in = 16, .out = 120, .kernel = 5}, gen),
      f6({.in = 120, .out = 84}, gen),
      criterion_(criterion) {
  // Biases start at 0: the paper gives none.
  c1.weight.mutable_value() = paper_uniform({6, 1, 5, 5}, 25, gen);
  c1.bias.mutable_value().fill(0);
  ag::Tensor c3_weight({16, 6, 5, 5});
  for (std::int64_t o = 0; o < 16; ++o) {
    const double fan_in = 25.0 * static_cast<double>(table_connections(o));
    const ag::Tensor w = paper_uniform({6, 5, 5}, fan_in, gen);
    for (std::int64_t c = 0; c < 6; ++c) {
      const bool connected = kTableI[static_cast<std::size_t>(c)][o] == 'X';
      for (std::int64_t k = 0; k < 25; ++k)
        c3_weight.set((o * 6 + c) * 25 + k, connected ? w.at(c * 25 + k) : 0.0);
    }
  }
  c3.weight.mutable_value() = c3_weight;
  c3.bias.mutable_value().fill(0);
  c5.weight.mutable_value() = paper_uniform({120, 16, 5, 5}, 400, gen);
  c5.bias.mutable_value().fill(0);
  f6.weight.mutable_value() = paper_uniform({84, 120}, 120, gen);
  f6.bias.mutable_value().fill(0);
  register_module("c1", c1);
  register_module("s2", s2);
  register_module("c3", c3);
  register_module("s4", s4);
  register_module("c5", c5);
  register_module("f6", f6);
  register_module("output", output);
}

ag::Variable LeNet1998::forward(const ag::Variable& input) const {
  using namespace ag;
  Variable x = pad2d(input, 2, -0.1);                                        // [N, 1, 32, 32]
  x = squash(c1(x));                                                         // [N, 6, 28, 28]
  x = squash(s2(x));                                                         // [N, 6, 14, 14]
  x = squash(c3(x));                                                         // [N, 16, 10, 10], Table I
  x = squash(s4(x));                                                         // [N, 16, 5, 5]
  x = squash(flatten(c5(x)));                                                // [N, 120]
  x = squash(f6(x));                                                         // [N, 84]
  // Euclidean RBF: y_i = sum_j (x_j - c_ij)^2.
  return squared_distances(x, output.centers);                              // [N, 10]
}

ag::Variable LeNet1998::loss(const ag::Variable& output, std::span<const std::int64_t> targets) const {
  using namespace ag;
  const Variable correct = nll_loss(-output, targets);  // mean of y_D
  if (criterion_ == Criterion::MaximumLikelihood) return correct;
  // log(exp(-j) + sum_i exp(-y_i)) as a log-sum-exp over [-y, -j], stable for large penalties.
  const Variable rubbish = Variable(Tensor::full({output.shape()[0], 1}, -kJ, output.dtype()));
  return correct + mean(logsumexp(cat({-output, rubbish}, 1), 1));
}

ag::Variable LeNet1998::log_probabilities(const ag::Variable& output) const {
  return ag::log_softmax(-output, 1);
}

std::int64_t LeNet1998::parameter_count() const {
  std::int64_t off_table = 0;
  for (std::int64_t o = 0; o < 16; ++o) off_table += (6 - table_connections(o)) * 25;
  return Module::parameter_count() - off_table;
}

std::int64_t LeNet1998::connections() const {
  std::int64_t c3 = 0;
  for (std::int64_t o = 0; o < 16; ++o) c3 += 25 * table_connections(o) + 1;
  return 28 * 28 * 6 * (25 + 1)  // C1
         + 14 * 14 * 6 * (4 + 1)  // S2: 4 inputs and the bias (the coefficient multiplies their sum)
         + 10 * 10 * c3           // C3
         + 5 * 5 * 16 * (4 + 1)   // S4
         + 120 * (400 + 1)        // C5
         + 84 * (120 + 1)         // F6
         + 10 * 84;               // RBF output
}

}  // namespace nn
