// lenet gradcheck: a model's gradients through its whole graph and loss, in float64, against
// finite differences: what to run after writing a new model or op.
#include <iomanip>
#include <iostream>
#include <optional>

#include "ops/fusion/fusion.hpp"
#include "tools/cli.hpp"

namespace cli {

int gradcheck(const std::vector<std::string>& args) {
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  nn::ModelGradcheckOptions check;
  std::uint64_t init_seed = 1;
  po::options_description options("options");
  add_model_option(options);
  options.add_options()
      ("examples", po::value(&check.examples)->default_value(check.examples), "batch of random inputs checked")
      ("elements", po::value(&check.elements_per_tensor)->default_value(check.elements_per_tensor),
       "elements checked per tensor, evenly spread (0: all)")
      ("seed", po::value(&init_seed)->default_value(init_seed), "seed of the parameters, inputs and targets")
      ("no-fusion", "run the ops one by one, without fused kernels");
  po::variables_map vm;
  if (!parse("gradcheck", "[--model NAME] [--examples N] [--elements N] [--no-fusion]", options, args, vm)) return 0;
  require_positive("examples", static_cast<double>(check.examples));
  if (check.elements_per_tensor < 0) throw UsageError("--elements must not be negative");
  check.seed = init_seed;

  ag::Generator gen(init_seed);
  const std::unique_ptr<nn::Model> model = entry.make(gen);
  std::optional<ag::NoFusionGuard> unfused;
  if (vm.count("no-fusion")) unfused.emplace();
  const nn::ModelGradcheck result = nn::check_model_gradients(*model, check);

  std::cout << "lenet gradcheck: " << entry.name << ", float64, " << check.examples
            << " random examples, loss and every parameter\n"
            << std::left << std::setw(22) << "tensor" << std::right << std::setw(9) << "checked" << std::setw(14)
            << "worst error" << std::setw(16) << "error/allowed" << '\n';
  for (const ag::GradcheckInputReport& t : result.tensors)
    std::cout << std::left << std::setw(22) << t.name << std::right << std::setw(9) << t.checked << std::setw(14)
              << std::scientific << std::setprecision(2) << t.worst_error << std::setw(16) << t.worst_ratio
              << (t.worst_ratio <= 1 ? "  ok" : "  FAIL") << '\n';
  if (!result.ok) {
    std::cout << "lenet gradcheck: " << entry.name << " FAILED: " << result.message << '\n';
    return 1;
  }
  std::cout << "lenet gradcheck: " << entry.name << " passed\n";
  return 0;
}

}  // namespace cli
