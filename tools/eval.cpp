// lenet eval: test accuracy, per-class accuracy and the confusion matrix of saved weights.

#include <cmath>
#include <iomanip>
#include <iostream>

#include "models/data/mnist.hpp"
#include "models/nn/safetensors.hpp"
#include "models/train/data_parallel.hpp"
#include "models/train/evaluation.hpp"
#include "tools/cli.hpp"

namespace cli {

int eval(const std::vector<std::string>& args) {
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  std::string weights = default_weights(entry), data = "data/mnist", errors, samples, log_probs;
  int threads = default_threads();
  po::options_description options("options");
  add_model_option(options);
  options.add_options()
      ("weights", po::value(&weights)->default_value(weights), "weights file (safetensors)")
      ("data", po::value(&data)->default_value(data), "directory with the MNIST IDX files")
      ("threads", po::value(&threads)->default_value(threads),
       "threads to run the batches on (the result does not depend on it)")
      ("errors", po::value(&errors), "write a PNG grid of the misclassified test digits")
      ("samples", po::value(&samples), "write a PNG grid of the first 40 training digits")
      ("log-probs", po::value(&log_probs),
       "write the log-probabilities of every test image, [10000, classes] float32, as safetensors");
  po::variables_map vm;
  if (!parse("eval",
             "[--model NAME] [--weights FILE] [--data DIR] [--threads N] [--errors FILE.png] [--samples FILE.png] "
             "[--log-probs FILE.safetensors]",
             options, args, vm))
    return 0;
  require_thread_count(threads);
  weights = resolve_path(vm, "weights");
  data = resolve_path(vm, "data", kFetchMnistHint);

  LoadedModel loaded = load_model(entry, weights);
  const nn::MnistSplit test_set = nn::load_mnist(data, nn::Split::Test);
  nn::DataParallel parallel(*loaded.model, nn::factory_of(entry), threads);
  const nn::Evaluation result = nn::evaluate(parallel, test_set);

  std::cout << std::fixed << std::setprecision(4) << weights << " (" << entry.name << ") on " << test_set.count
            << " test images: accuracy " << result.accuracy << " ("
            << static_cast<std::int64_t>(std::llround(result.accuracy * static_cast<double>(test_set.count)))
            << " correct), loss " << result.loss << "\n\nper class:\n";
  const std::size_t classes = result.confusion.size();
  for (std::size_t d = 0; d < classes; ++d) {
    std::int64_t total = 0;
    for (auto count : result.confusion[d]) total += count;
    const auto correct = result.confusion[d][d];
    std::cout << "  " << d << ": " << std::setprecision(4)
              << (total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0) << "  ("
              << correct << "/" << total << ")\n";
  }
  std::cout << "\nconfusion matrix (rows: true digit, columns: predicted):\n      ";
  for (std::size_t p = 0; p < classes; ++p) std::cout << std::setw(6) << p;
  std::cout << '\n';
  for (std::size_t t = 0; t < classes; ++t) {
    std::cout << std::setw(6) << t;
    for (std::size_t p = 0; p < classes; ++p) std::cout << std::setw(6) << result.confusion[t][p];
    std::cout << '\n';
  }
  if (!errors.empty()) {
    nn::write_error_grid(errors, test_set, result);
    std::cout << "\nwrote " << errors << '\n';
  }
  if (!log_probs.empty()) {
    nn::save_safetensors(log_probs, {{"log_probs", result.log_probabilities}},
                         {{"model", entry.name}, {"weights", weights}, {"split", "test"}});
    std::cout << "wrote " << log_probs << '\n';
  }
  if (!samples.empty()) {
    nn::write_sample_grid(samples, nn::load_mnist(data, nn::Split::Train));
    std::cout << "wrote " << samples << '\n';
  }
  return 0;
}

}  // namespace cli
