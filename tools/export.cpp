// lenet export: a model with its weights as an ONNX file (models/export/onnx.hpp), and optionally
// a picture of the exported graph.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "autograd/dot.hpp"
#include "autograd/file.hpp"
#include "models/data/mnist.hpp"
#include "models/export/onnx.hpp"
#include "models/train/evaluation.hpp"
#include "tools/cli.hpp"

namespace cli {

namespace {

// What the ONNX file says of itself: the weights' record (how they were trained, their test
// accuracy), the model and the contract of its input and output.
nn::Metadata onnx_metadata(const LoadedModel& loaded, const std::string& weights) {
  const nn::InputSpec& input = loaded.model->input();
  const std::string classes = std::to_string(loaded.model->classes());
  nn::Metadata metadata = nn::onnx_metadata_of_weights(loaded.metadata, weights);
  metadata["model"] = loaded.entry->name;
  metadata["model_description"] = loaded.entry->description;
  metadata["input"] = "image: float32 [N, " + std::to_string(input.channels) + ", " + std::to_string(input.height) +
                      ", " + std::to_string(input.width) + "], grey levels 0-255 as in MNIST's files (0 the background)";
  metadata["output"] = "log_probs: float32 [N, " + classes + "], log-probabilities; the argmax is the predicted class";
  return metadata;
}

std::string format_of(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension.empty() ? extension : extension.substr(1);
}

}  // namespace

int export_model(const std::vector<std::string>& args) {
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  std::string weights = default_weights(entry), data = "data/mnist", out, graph;
  po::options_description options("options");
  add_model_option(options);
  options.add_options()
      ("weights", po::value(&weights)->default_value(weights), "weights file (safetensors)")
      ("output,o", po::value(&out)->required(), "ONNX file to write")
      ("graph", po::value(&graph), "also draw the exported graph (.dot, .svg or .png)")
      ("data", po::value(&data)->default_value(data),
       "MNIST, to measure the test accuracy when the weights do not record it");
  po::variables_map vm;
  if (!parse("export", "[--model NAME] [--weights FILE] -o FILE.onnx [--graph FILE.svg] [--data DIR]", options, args, vm))
    return 0;
  if (!graph.empty() && format_of(graph) != "dot" && format_of(graph) != "svg" && format_of(graph) != "png")
    throw UsageError("--graph must end in .dot, .svg or .png, got '" + graph + "'");
  weights = resolve_path(vm, "weights");

  LoadedModel loaded = load_model(entry, weights);
  nn::OnnxExportOptions export_options{.model_name = entry.name, .metadata = onnx_metadata(loaded, weights)};
  nn::Metadata& metadata = export_options.metadata;
  if (metadata.count("test_accuracy")) {
    metadata["test_accuracy_source"] = "measured on the 10,000 MNIST test images when the weights were trained";
  } else {
    // Weights without a record (a checkpoint of one's own, say): measured now, if MNIST is here.
    try {
      const nn::MnistSplit test_set = nn::load_mnist(resolve_path(vm, "data", kFetchMnistHint), nn::Split::Test);
      nn::DataParallel parallel(*loaded.model, nn::factory_of(entry), 1);
      std::ostringstream accuracy;
      accuracy.precision(6);
      accuracy << std::fixed << nn::evaluate(parallel, test_set).accuracy;
      metadata["test_accuracy"] = accuracy.str();
      metadata["test_accuracy_source"] = "measured by lenet export on the 10,000 MNIST test images";
    } catch (const MissingPath&) {
      std::cerr << "lenet export: " << weights << " records no test accuracy and MNIST was not found: none recorded\n";
    }
  }

  const std::string bytes = nn::export_onnx(*loaded.model, export_options);
  ag::write_file_atomically(out, bytes);
  std::cout << "wrote " << out << " (" << entry.name << ", opset " << nn::kOnnxOpset << "; " << metadata["input"]
            << "; " << metadata["output"] << ")\n";
  if (!graph.empty()) {
    const std::string dot = nn::onnx_graph_dot(bytes, entry.name + " exported to ONNX");
    ag::write_file_atomically(graph, format_of(graph) == "dot" ? dot : ag::render_dot(dot, format_of(graph)));
    std::cout << "wrote " << graph << '\n';
  }
  return 0;
}

}  // namespace cli
