// Graph export: the graph behind a Variable as Graphviz DOT, and its layout to SVG or PNG.
#pragma once

#include <string>
#include <string_view>

#include "autograd/variable.hpp"

namespace ag {

struct DotOptions {
  std::string title;             // graph label; empty for none
  bool show_backward = false;    // also label op nodes with the backward they run ("relu_backward")
  std::string rankdir = "TB";    // "TB" (top to bottom) or "LR"
};

/// DOT text: one node per op (op name and output shape), leaves drawn by kind (parameters with name
/// and shape, inputs, constants), edges in data-flow direction. Node ids come from the topological
/// position, so the same graph always gives the same text.
std::string to_dot(const Variable& output, const DotOptions& options = {});

/// Lays out DOT text with Graphviz's own library (gvc, "dot" layout) and renders it in `format`
/// ("svg" or "png"). Throws with Graphviz's message if the text does not parse.
std::string render_dot(const std::string& dot, std::string_view format);

/// Writes render_dot's result (or the DOT itself for format "dot") to `path`, atomically.
void write_graph(const Variable& output, const std::string& path, std::string_view format,
                 const DotOptions& options = {});

}  // namespace ag
