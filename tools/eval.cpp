// lenet eval: test accuracy, per-class accuracy and the confusion matrix of saved weights.

#include <cmath>
#include <iomanip>
#include <iostream>

#include "models/data_parallel.hpp"
#include "models/lenet.hpp"
#include "models/mnist.hpp"
#include "models/weights.hpp"
#include "tools/cli.hpp"
#include "tools/evaluation.hpp"

namespace cli {

int eval(const std::vector<std::string>& args) {
  std::string weights = "models/lenet5.safetensors", data = "data/mnist", errors, samples;
  int threads = default_threads();
  po::options_description options("options");
  options.add_options()
      ("weights", po::value(&weights)->default_value(weights), "weights file (safetensors)")
      ("data", po::value(&data)->default_value(data), "directory with the MNIST IDX files")
      ("threads", po::value(&threads)->default_value(threads),
       "threads to run the batches on (the result does not depend on it)")
      ("errors", po::value(&errors), "write a PNG grid of the misclassified test digits")
      ("samples", po::value(&samples), "write a PNG grid of the first 40 training digits");
  po::variables_map vm;
  if (!parse("eval", "[--weights FILE] [--data DIR] [--threads N] [--errors FILE.png] [--samples FILE.png]", options, args, vm)) return 0;
  require_thread_count(threads);
  weights = resolve_path(vm, "weights");
  data = resolve_path(vm, "data", kFetchMnistHint);

  ag::Generator gen(0);
  nn::LeNet5 model(gen);
  const nn::Metadata metadata = nn::load_weights(model, weights);
  const nn::MnistSplit test_set = nn::load_mnist(data, nn::Split::Test);
  nn::DataParallel parallel(model, threads);
  const Evaluation result = evaluate(parallel, test_set, nn::normalization_from(metadata));

  std::cout << std::fixed << std::setprecision(4) << weights << " on " << test_set.count
            << " test images: accuracy " << result.accuracy << " ("
            << static_cast<std::int64_t>(std::llround(result.accuracy * static_cast<double>(test_set.count)))
            << " correct), loss " << result.loss << "\n\nper class:\n";
  for (int d = 0; d < 10; ++d) {
    std::int64_t total = 0;
    for (auto count : result.confusion[static_cast<std::size_t>(d)]) total += count;
    const auto correct = result.confusion[static_cast<std::size_t>(d)][static_cast<std::size_t>(d)];
    std::cout << "  " << d << ": " << std::setprecision(4)
              << (total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0) << "  ("
              << correct << "/" << total << ")\n";
  }
  std::cout << "\nconfusion matrix (rows: true digit, columns: predicted):\n      ";
  for (int p = 0; p < 10; ++p) std::cout << std::setw(6) << p;
  std::cout << '\n';
  for (int t = 0; t < 10; ++t) {
    std::cout << std::setw(6) << t;
    for (int p = 0; p < 10; ++p)
      std::cout << std::setw(6) << result.confusion[static_cast<std::size_t>(t)][static_cast<std::size_t>(p)];
    std::cout << '\n';
  }
  if (!errors.empty()) {
    write_error_grid(errors, test_set, result);
    std::cout << "\nwrote " << errors << '\n';
  }
  if (!samples.empty()) {
    write_sample_grid(samples, nn::load_mnist(data, nn::Split::Train));
    std::cout << "wrote " << samples << '\n';
  }
  return 0;
}

}  // namespace cli
