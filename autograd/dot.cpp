// DOT export of the graph behind a Variable, and rendering through Graphviz's C library.
#include "autograd/dot.hpp"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

#include "autograd/engine.hpp"
#include "autograd/file.hpp"

namespace ag {

// Within a DOT double-quoted string:
//  - `"` ends the string unless escaped, so `\"`;
//  - `\` starts a label escape (\n, \l, \N ...), so `\\` for a literal backslash;
//  - `&` starts an HTML entity even in plain labels ("&amp;" shows as "&"), so `&amp;`;
//  - a newline becomes the centred line break `\n`; other control characters become spaces.
std::string escape_dot_label(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '&': out += "&amp;"; break;
      case '\n': out += "\\n"; break;
      default: out += (static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
    }
  }
  return out;
}

namespace {

// "kernel=2 stride=2": an op's attributes as one line, doubles as printf's %g writes them.
std::string attributes_line(const OpAttributes& attributes) {
  std::string line;
  for (const OpAttribute& attribute : attributes) {
    if (!line.empty()) line += ' ';
    line += attribute.name;
    line += '=';
    std::visit(
        [&](const auto& value) {
          using Value = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<Value, double>) {
            char text[32];
            std::snprintf(text, sizeof text, "%g", value);
            line += text;
          } else if constexpr (std::is_same_v<Value, std::int64_t>) {
            line += std::to_string(value);
          } else {
            line += shape_str(Shape(value.begin(), value.end()));
          }
        },
        attribute.value);
  }
  return line;
}

// The visible label of one Variable, lines separated by DOT's `\n`; already escaped.
std::string label_of(const Variable& v, const DotOptions& options) {
  const std::string shape = escape_dot_label(shape_str(v.shape()));
  if (const Node* node = v.node().get()) {
    std::string label = escape_dot_label(node->op) + "\\n" + shape;
    if (node->attributes) label += "\\n" + escape_dot_label(attributes_line(*node->attributes));
    if (options.show_backward) {
      if (node->freed) label += "\\n(graph freed)";
      else if (node->backward) label += "\\n" + escape_dot_label(std::string(node->op) + "_backward");
      else label += "\\n(no backward)";
    }
    return label;
  }
  const char* unnamed = v.requires_grad() ? "parameter" : "input";
  return escape_dot_label(v.name().empty() ? unnamed : v.name()) + "\\n" + shape;
}

// Attributes beyond the defaults set once in the `node [...]` line (a gray op box).
std::string style_of(const Variable& v, bool is_output) {
  std::string style;
  if (v.is_leaf() && !v.requires_grad()) style = ", style=\"filled,dashed\"";
  if (is_output) return style + ", fillcolor=darkolivegreen1";
  if (v.is_leaf()) return style + (v.requires_grad() ? ", fillcolor=lightblue" : ", fillcolor=white");
  return style;
}

bool is_known_rankdir(std::string_view rankdir) {
  return rankdir == "TB" || rankdir == "LR" || rankdir == "BT" || rankdir == "RL";
}

}  // namespace

std::string to_dot(const Variable& output, const DotOptions& options) {
  if (!output.defined()) fail("to_dot", "undefined variable");
  if (!is_known_rankdir(options.rankdir))
    fail("to_dot", "rankdir must be TB, LR, BT or RL, not '" + options.rankdir + "'");

  // The engine's order puts the output first; reversed, every input comes before its consumers,
  // which is the order the DOT text is read in. Ids are positions in it: n0 is computed first.
  const VariableOrder reverse_order = reverse_topological_order(output, true);
  const std::vector<Variable> order(reverse_order.rbegin(), reverse_order.rend());
  std::unordered_map<const void*, std::size_t> id_of;
  for (std::size_t i = 0; i < order.size(); ++i) id_of.emplace(order[i].id(), i);

  std::string dot = "digraph autograd {\n";
  dot += "  graph [rankdir=" + options.rankdir + ", fontname=\"Helvetica\", fontsize=12";
  if (!options.title.empty())
    dot += ", label=\"" + escape_dot_label(options.title) + "\", labelloc=t";
  dot += "];\n";
  dot += "  node [shape=box, style=filled, fillcolor=lightgray, fontname=\"Helvetica\", "
         "fontsize=10, height=0.3];\n";
  dot += "  edge [arrowsize=0.7];\n";
  if (options.show_legend) {
    // One node holding a row of sample boxes: the order is fixed, and it adds no edges.
    dot += "  legend [shape=plain, style=\"\", label=<<table border=\"0\" cellborder=\"1\" "
           "cellspacing=\"4\" cellpadding=\"4\"><tr><td border=\"0\">legend</td>"
           "<td bgcolor=\"lightgray\">op<br/>[output shape]</td>"
           "<td bgcolor=\"lightblue\">parameter<br/>[shape]</td>"
           "<td style=\"dashed\">input / constant<br/>[shape]</td>"
           "<td bgcolor=\"darkolivegreen1\">output</td></tr></table>>];\n";
  }
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Variable& v = order[i];
    const std::string id = "n" + std::to_string(i);
    dot += "  " + id + " [label=\"" + label_of(v, options) + "\"" +
           style_of(v, v.id() == output.id()) + "];\n";
    // One edge per input slot, written right after the op that consumes it. Every input is
    // already declared: it comes earlier in the order.
    if (const Node* node = v.node().get())
      for (const Variable& input : node->inputs)
        dot += "  n" + std::to_string(id_of.at(input.id())) + " -> " + id + ";\n";
  }
  dot += "}\n";
  return dot;
}

namespace {

// Graphviz reports errors through one global callback; render_dot holds graphviz_mutex while it
// is installed, so a plain global buffer is enough.
std::mutex graphviz_mutex;
std::string graphviz_messages;

int collect_graphviz_message(char* message) {
  graphviz_messages += message;
  return 0;
}

// Installs the collecting callback for the lifetime of a render and restores the previous one.
class GraphvizMessages {
 public:
  GraphvizMessages() : previous_(agseterrf(collect_graphviz_message)) { graphviz_messages.clear(); }
  ~GraphvizMessages() { agseterrf(previous_); }
  GraphvizMessages(const GraphvizMessages&) = delete;
  GraphvizMessages& operator=(const GraphvizMessages&) = delete;

  // "render_dot: <what>: <graphviz's message>", trimmed of its trailing newline.
  [[noreturn]] void fail(const std::string& what) const {
    std::string detail = graphviz_messages;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    throw std::runtime_error("render_dot: " + what + (detail.empty() ? "" : ": " + detail));
  }

 private:
  agusererrf previous_;
};

/// The process's one Graphviz context, created on first use and never freed. Graphviz 2.43's pango
/// plugin keeps a static pointer to the last font name it measured, and that name lives in the
/// context's font table: once a context is freed, the next context's first label compares against
/// freed memory (a heap-use-after-free under AddressSanitizer). Called with graphviz_mutex held.
GVC_t* graphviz_context() {
  static GVC_t* const context = gvContext();
  return context;
}
struct GraphDeleter {
  void operator()(Agraph_t* graph) const { agclose(graph); }
};

}  // namespace

std::string render_dot(const std::string& dot, std::string_view format) {
  const std::lock_guard<std::mutex> lock(graphviz_mutex);
  GraphvizMessages messages;

  // The context loads the plugins listed in Graphviz's config (Debian: libgvc6's config6a).
  GVC_t* const gvc = graphviz_context();
  if (!gvc) messages.fail("cannot create a Graphviz context");

  const std::unique_ptr<Agraph_t, GraphDeleter> graph(agmemread(dot.c_str()));
  if (!graph) messages.fail("the DOT text does not parse");

  // A missing layout plugin is the usual cause of a failure here (Debian: package libgvc6).
  if (gvLayout(gvc, graph.get(), "dot") != 0)
    messages.fail("the 'dot' layout failed (are Graphviz's plugins installed?)");
  // The layout must be freed before the graph is closed: a guard destroyed first.
  struct LayoutGuard {
    GVC_t* gvc;
    Agraph_t* graph;
    ~LayoutGuard() { gvFreeLayout(gvc, graph); }
  } layout{gvc, graph.get()};

  const std::string format_name(format);
  char* data = nullptr;
  unsigned int length = 0;
  if (gvRenderData(gvc, graph.get(), format_name.c_str(), &data, &length) != 0 || !data) {
    if (data) gvFreeRenderData(data);
    messages.fail("cannot render format '" + format_name + "'");
  }
  std::string bytes(data, length);
  gvFreeRenderData(data);
  return bytes;
}

void write_graph(const Variable& output, const std::string& path, std::string_view format,
                 const DotOptions& options) {
  const std::string dot = to_dot(output, options);
  write_file_atomically(path, format == "dot" ? dot : render_dot(dot, format));
}

}  // namespace ag
