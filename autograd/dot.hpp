// Graph export: the graph behind a Variable as Graphviz DOT, and its layout to SVG or PNG.
#pragma once

#include <string>
#include <string_view>

#include "autograd/variable.hpp"

namespace ag {

struct DotOptions {
  std::string title;             // graph label; empty for none
  bool show_backward = false;    // also label op nodes with the backward they run ("relu_backward")
                                 // or "(graph freed)" once a backward has released it
  std::string rankdir = "TB";    // "TB" (top to bottom), "LR", "BT" or "RL"
  bool show_legend = false;      // add a small legend: one extra node named "legend", no edges
};

/// DOT text: one DOT node per Variable the output depends on, found by
/// reverse_topological_order(output, /*include_constants=*/true):
///   op results (Variables with a node): gray boxes, "op\n[shape]", and a line of the op's
///   attributes when they were recorded (under an AttributeGuard): "kernel=2 stride=2";
///   parameters (leaves that require grad): light blue, "name\n[shape]" ("parameter" if unnamed);
///   inputs and constants (leaves without grad): white, dashed, "name\n[shape]" ("input" if unnamed);
///   the output: any of the above, filled green.
/// Edges point in data-flow direction (input -> op), one per input slot of a node: x * x draws two
/// parallel edges from x, so the edge count is the sum of the nodes' input counts.
/// Node ids are n0, n1, ... in topological order (inputs first, the output last), never addresses,
/// so the same graph always gives the same text, byte for byte. Names are escaped for DOT.
std::string to_dot(const Variable& output, const DotOptions& options = {});

/// `text` for inside a DOT double-quoted label, displayed literally: quotes, backslashes and `&`
/// escaped, a newline as DOT's centred line break.
std::string escape_dot_label(std::string_view text);

/// Lays out DOT text with Graphviz's own library (gvc, "dot" layout) and renders it in `format`
/// ("svg" or "png"; any format the installed Graphviz plugins know). Returns the bytes.
/// Throws std::runtime_error with Graphviz's message if the text does not parse, the layout fails
/// or the format is unknown. Graphviz is not thread-safe: calls are serialised by a mutex.
std::string render_dot(const std::string& dot, std::string_view format);

/// Writes render_dot's result (or the DOT text itself for format "dot") to `path`, atomically.
void write_graph(const Variable& output, const std::string& path, std::string_view format,
                 const DotOptions& options = {});

}  // namespace ag
