// small_cnn: a model of one's own, added to the framework as docs/api.md ("Adding a model") shows.
// The model is this file; the one registry line is the register_model call in main. With it, the
// whole `lenet` command works for the new model:
//
//   small_cnn models                          (lists lenet5, mlp and small_cnn)
//   small_cnn gradcheck --model small_cnn     (its gradients against finite differences)
//   small_cnn train --model small_cnn         (then eval, predict, graph, serve, bench alike)
#include "models/nn/layers.hpp"
#include "models/registry.hpp"
#include "ops/ops.hpp"
#include "tools/cli.hpp"

namespace {

// conv 3x3 -> tanh -> average-pool 4 -> dropout -> linear: 4,010 parameters.
class SmallCnn : public nn::Model {
 public:
  explicit SmallCnn(ag::Generator& gen)
      : Model({.channels = 1, .height = 28, .width = 28}),  // MNIST digits, MNIST's normalisation
        conv({.in = 1, .out = 8, .kernel = 3, .padding = 1}, gen),
        dropout(0.25),
        fc({.in = 8 * 7 * 7, .out = 10}, gen) {
    register_module("conv", conv);
    register_module("dropout", dropout);
    register_module("fc", fc);
  }

  // x:[N, 1, 28, 28] -> logits [N, 10]. Model's defaults do the rest: the loss is the negative
  // log-likelihood of log_softmax(logits), the predicted class the largest logit.
  ag::Variable forward(const ag::Variable& x) const override {
    using namespace ag;
    Variable h = avg_pool2d(tanh(conv(x)), 4);  // [N, 8, 7, 7]
    return fc(dropout(flatten(h)));             // [N, 10]
  }

  nn::Conv2d conv;
  nn::Dropout dropout;
  nn::Linear fc;
};

}  // namespace

int main(int argc, char** argv) {
  nn::register_model({"small_cnn", "conv 3x3 (8 maps), tanh, average-pool 4, dropout, linear",
                      nn::make_model<SmallCnn>, {.epochs = 3, .lr = 0.1, .augment = 0}});
  return cli::run(argc, argv);
}
