// tiny_mlp: the engine's API on one screen. A two-layer perceptron scores four 2-d points, one
// backward pass computes the gradients, and the graph that was recorded is written out:
//
//   tiny_mlp graph.svg      (or graph.png, or graph.dot for the DOT text)
#include <filesystem>
#include <iostream>
#include <vector>

#include "autograd/dot.hpp"
#include "ops/ops.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tiny_mlp OUTPUT.svg|OUTPUT.png|OUTPUT.dot\n";
    return 2;
  }
  const std::string path = argv[1];
  const std::string extension = std::filesystem::path(path).extension().string();  // ".svg"
  if (extension.empty()) {
    std::cerr << "tiny_mlp: name the output with an extension: .svg, .png or .dot\n";
    return 2;
  }
  const std::string format = extension.substr(1);

  // The data: inputs that need no gradient, and one class label per point.
  ag::Variable points(ag::Tensor::from({4, 2}, {0.1, 0.9, 0.8, 0.2, 0.7, 0.8, 0.2, 0.1},
                                       ag::DType::Float32),
                      /*requires_grad=*/false, "points");
  const std::vector<std::int64_t> labels{0, 1, 1, 0};

  // The parameters: leaves that require grad, named the way a module would name them.
  ag::Generator gen(0);
  ag::Variable w1(ag::Tensor::uniform({8, 2}, -0.7, 0.7, gen), true, "fc1.weight");
  ag::Variable b1(ag::Tensor::zeros({8}), true, "fc1.bias");
  ag::Variable w2(ag::Tensor::uniform({2, 8}, -0.35, 0.35, gen), true, "fc2.weight");
  ag::Variable b2(ag::Tensor::zeros({2}), true, "fc2.bias");

  // The forward pass records one node per op.
  ag::Variable hidden = ag::relu(ag::linear(points, w1, b1));         // [4, 8]
  ag::Variable logp = ag::log_softmax(ag::linear(hidden, w2, b2), 1);  // [4, 2]
  ag::Variable loss = ag::nll_loss(logp, labels);                      // []

  // The backward pass fills .grad of every parameter, then frees the graph's saved tensors. The
  // graph's structure (ops, inputs, shapes) stays, so it can still be drawn.
  loss.backward();
  std::cout << "loss " << loss.value().item() << "\n";
  for (const ag::Variable& p : {w1, b1, w2, b2})
    std::cout << "d loss / d " << p.name() << ": " << ag::shape_str(p.grad().shape()) << "\n";

  ag::DotOptions options;
  options.title = "tiny MLP: linear -> relu -> linear -> log_softmax -> nll_loss";
  options.show_legend = true;
  ag::write_graph(loss, path, format, options);
  std::cout << "wrote " << path << "\n";
  return 0;
}
