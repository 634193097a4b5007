// ONNX export: a model's forward and log-probabilities traced op by op into an ONNX graph that
// ONNX Runtime, netron, TensorRT and the mobile runtimes run unchanged. Every model's graph keeps
// the same contract, so that its user needs to know nothing of ours (docs/onnx.md):
//   input  "image"      float32 [N, C, H, W]: grey levels 0..255 as in MNIST's files, 0 the
//                       background; the graph applies the model's own normalisation;
//   output "log_probs"  float32 [N, classes]: log-probabilities, whose argmax is the predicted class;
// N dynamic; initializers named as the model's parameters and buffers ("conv1.weight"); opset 17,
// IR version 8. The graph passes ONNX's checker and strict shape inference before it is returned.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "models/model.hpp"
#include "models/nn/safetensors.hpp"

namespace nn {

/// A model that cannot be exported, or a graph ONNX's checker refuses. One line naming the model:
///   model no_onnx uses op softsign, which has no ONNX form
class OnnxExportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The versions export_onnx writes: the opset of the default domain and the IR version, both
/// understood by onnx 1.12 (Debian 12) and every ONNX Runtime since 1.13.
inline constexpr int kOnnxOpset = 17;
inline constexpr int kOnnxIrVersion = 8;

struct OnnxExportOptions {
  std::string model_name;  // the graph's name and the model the error messages name
  Metadata metadata;       // written as the model's metadata_props (how it was trained, its accuracy)
};

/// The bytes of an ONNX model (a serialised ModelProto) computing
///   log_probs = model.log_probabilities(model((image / 255 - mean) / std))
/// with the mean and std of the model's InputSpec, for any batch size N.
///
/// How: the model runs twice, in eval mode, in float32, unfused, recording every op with its
/// attributes (ag::AttributeGuard), on batches of 2 and 3 blank images; its buffers and the input
/// are made to record for the trace and restored after. Each recorded op becomes its ONNX form
/// (models/export/onnx_ops.cpp); the sizes that differ between the two traces are the batch's,
/// and stay free in the graph. Parameters and buffers become initializers under their names, other
/// constants (the scalars of `1.7159 * tanh(x)`, a mask) under generated ones; each initializer's
/// doc_string says which it is: "parameter", "buffer" or "constant".
///
/// Throws OnnxExportError, one line naming the model, if an op has no ONNX form, if the model's
/// graph, an op's attribute or a constant changes with the batch size other than through sizes a
/// reshape can leave free, if a parameter is not float32, or if ONNX's checker or its strict shape
/// inference refuses the graph. The model is left as it was (training mode, buffers).
std::string export_onnx(Model& model, const OnnxExportOptions& options);

/// export_onnx written to `path` atomically (ag::write_file_atomically): nothing is written when
/// the export fails, and a failed write leaves the old file.
void save_onnx(Model& model, const std::string& path, const OnnxExportOptions& options);

/// What an exported file records of the weights it was made from: their metadata (the model, its
/// test accuracy, how it was trained) without the normalisation fields, which the graph applies,
/// and "weights_file", the file's name.
Metadata onnx_metadata_of_weights(const Metadata& weights_metadata, const std::string& weights_path);

/// Graphviz DOT text of an exported model's graph: its ONNX ops (gray, with their attributes and
/// inferred output shape), parameters and buffers (blue, with name and shape), constants (white,
/// dashed, the small ones with their values), the input (white, dashed) and the output (green), in
/// the style of ag::to_dot. Throws OnnxExportError if `onnx_bytes` is not an ONNX model.
std::string onnx_graph_dot(std::string_view onnx_bytes, const std::string& title = {});

}  // namespace nn
