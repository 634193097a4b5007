// The DOT export and Graphviz rendering, on graphs built with tiny ops defined here through
// record() (so these tests do not depend on ops/): golden text, parsing back with cgraph,
// determinism, escaping, SVG and PNG output, and Graphviz's errors.
#include "autograd/dot.hpp"

#include <graphviz/cgraph.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "autograd/engine.hpp"
#include "autograd/file.hpp"

using namespace ag;

namespace {

// y = a * b, elementwise, same shapes.
Variable mul(const Variable& a, const Variable& b) {
  Tensor y = a.value().clone();
  for (std::int64_t i = 0; i < y.numel(); ++i) y.set(i, a.value().at(i) * b.value().at(i));
  Tensor av = a.value(), bv = b.value();
  return record(std::move(y), "mul", {a, b}, [av, bv](const Tensor& dy, const GradMask&) {
    Tensor da = dy.clone(), db = dy.clone();
    for (std::int64_t i = 0; i < dy.numel(); ++i) {
      da.set(i, dy.at(i) * bv.at(i));
      db.set(i, dy.at(i) * av.at(i));
    }
    return TensorList{da, db};
  });
}

// y = sum_i x[i], a scalar.
Variable sum(const Variable& x) {
  double total = 0;
  for (std::int64_t i = 0; i < x.value().numel(); ++i) total += x.value().at(i);
  const Shape shape = x.shape();
  return record(Tensor::full({}, total, x.dtype()), "sum", {x},
                [shape](const Tensor& dy, const GradMask&) {
                  return TensorList{Tensor::full(shape, dy.item(), dy.dtype())};
                });
}

// y = x, under any op name (to test how names are escaped).
Variable identity(const Variable& x, OpName op) {
  return record(x.value().clone(), op, {x},
                [](const Tensor& dy, const GradMask&) { return TensorList{dy}; });
}

// The graph of tests/autograd/golden/small_graph.dot:
//   x (input) and layer.weight (parameter) -> mul -> mul with itself (two edges) -> mul by an
//   unnamed constant -> sum (the output). Seven Variables, seven edges.
struct SmallGraph {
  Variable x, weight, constant, loss;
};

SmallGraph build_small_graph() {
  SmallGraph g;
  g.x = Variable(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}, DType::Float64), false, "x");
  g.weight = Variable(Tensor::full({2, 3}, 0.5, DType::Float64), true, "layer.weight");
  g.constant = Variable(Tensor::full({2, 3}, 2.0, DType::Float64));
  Variable h = mul(g.x, g.weight);
  Variable squared = mul(h, h);
  g.loss = sum(mul(squared, g.constant));
  return g;
}

constexpr std::size_t kSmallGraphVariables = 7;
constexpr std::size_t kSmallGraphEdges = 7;

// cgraph's parse of DOT text; null if it does not parse.
using ParsedGraph = std::unique_ptr<Agraph_t, decltype(&agclose)>;
ParsedGraph parse(const std::string& dot) { return ParsedGraph(agmemread(dot.c_str()), &agclose); }

// An attribute of the node called `name` in `graph` ("" if absent).
std::string node_attribute(Agraph_t* graph, const char* name, const char* attribute) {
  Agnode_t* node = agnode(graph, const_cast<char*>(name), 0);
  if (!node) return "<no node " + std::string(name) + ">";
  const char* value = agget(node, const_cast<char*>(attribute));
  return value ? value : "";
}

// "n<i>", the id to_dot gives the i-th Variable in topological order. (Built by appending:
// GCC 12 warns falsely (-Wrestrict) about "n" + std::to_string(i) inside a loop.)
std::string node_id(std::size_t i) {
  std::string id = "n";
  id += std::to_string(i);
  return id;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST(ToDot, MatchesGoldenFile) {
  const SmallGraph g = build_small_graph();
  EXPECT_EQ(to_dot(g.loss), read_file("tests/autograd/golden/small_graph.dot"));
}

TEST(ToDot, MatchesGoldenFileWithTitleLegendBackwardAndLeftToRight) {
  const SmallGraph g = build_small_graph();
  const DotOptions options{.title = "a \"small\" graph", .show_backward = true, .rankdir = "LR",
                           .show_legend = true};
  EXPECT_EQ(to_dot(g.loss, options),
            read_file("tests/autograd/golden/small_graph_titled_legend_backward.dot"));
}

TEST(ToDot, ParsesBackWithOneNodePerVariableAndOneEdgePerInputSlot) {
  const SmallGraph g = build_small_graph();
  ASSERT_EQ(reverse_topological_order(g.loss, true).size(), kSmallGraphVariables);
  const ParsedGraph graph = parse(to_dot(g.loss));
  ASSERT_TRUE(graph);
  EXPECT_TRUE(agisdirected(graph.get()));
  EXPECT_EQ(agnnodes(graph.get()), static_cast<int>(kSmallGraphVariables));
  EXPECT_EQ(agnedges(graph.get()), static_cast<int>(kSmallGraphEdges));  // mul(h, h) counts twice

  // The output is the last node, green, and its one edge comes from the last mul.
  const std::string last = node_id(kSmallGraphVariables - 1);
  EXPECT_EQ(node_attribute(graph.get(), last.c_str(), "label"), "sum\\n[]");
  EXPECT_EQ(node_attribute(graph.get(), last.c_str(), "fillcolor"), "darkolivegreen1");
  Agnode_t* output = agnode(graph.get(), const_cast<char*>(last.c_str()), 0);
  EXPECT_EQ(agdegree(graph.get(), output, /*in=*/1, /*out=*/0), 1);
  EXPECT_EQ(agdegree(graph.get(), output, /*in=*/0, /*out=*/1), 0);

  // Every op node has as many incoming edges as its op has inputs; leaves have none.
  const VariableOrder reverse_order = reverse_topological_order(g.loss, true);
  for (std::size_t i = 0; i < reverse_order.size(); ++i) {
    const Variable& v = reverse_order[reverse_order.size() - 1 - i];
    const std::string id = node_id(i);
    Agnode_t* node = agnode(graph.get(), const_cast<char*>(id.c_str()), 0);
    ASSERT_NE(node, nullptr) << id;
    const int inputs = v.node() ? static_cast<int>(v.node()->inputs.size()) : 0;
    EXPECT_EQ(agdegree(graph.get(), node, /*in=*/1, /*out=*/0), inputs) << id;
  }
}

TEST(ToDot, LeafKindsAreDrawnDifferently) {
  const SmallGraph g = build_small_graph();
  const ParsedGraph graph = parse(to_dot(g.loss));
  ASSERT_TRUE(graph);
  // n0: the named input, n1: the parameter, n2: an op, n4: the unnamed constant.
  EXPECT_EQ(node_attribute(graph.get(), "n0", "label"), "x\\n[2, 3]");
  EXPECT_EQ(node_attribute(graph.get(), "n0", "style"), "filled,dashed");
  EXPECT_EQ(node_attribute(graph.get(), "n1", "label"), "layer.weight\\n[2, 3]");
  EXPECT_EQ(node_attribute(graph.get(), "n1", "fillcolor"), "lightblue");
  EXPECT_EQ(node_attribute(graph.get(), "n2", "label"), "mul\\n[2, 3]");
  EXPECT_EQ(node_attribute(graph.get(), "n2", "fillcolor"), "lightgray");  // the default
  EXPECT_EQ(node_attribute(graph.get(), "n4", "label"), "input\\n[2, 3]");
  EXPECT_EQ(node_attribute(graph.get(), "n4", "fillcolor"), "white");
}

TEST(ToDot, SameGraphBuiltTwiceGivesIdenticalText) {
  const SmallGraph first = build_small_graph();
  // Keep the first graph alive so the second one lives at other addresses.
  std::vector<SmallGraph> padding(3, build_small_graph());
  const SmallGraph second = build_small_graph();
  ASSERT_NE(first.loss.id(), second.loss.id());
  EXPECT_EQ(to_dot(first.loss), to_dot(second.loss));
  EXPECT_EQ(to_dot(first.loss), to_dot(first.loss));
}

TEST(ToDot, EscapesQuotesBackslashesAmpersandsAndNewlines) {
  Variable x(Tensor::ones({1}, DType::Float64), true, "say \"hi\" \\N & bye\nnext line");
  Variable y = identity(x, "odd\"op\\");
  const std::string dot = to_dot(y);
  EXPECT_TRUE(contains(dot, "label=\"say \\\"hi\\\" \\\\N &amp; bye\\nnext line\\n[1]\"")) << dot;
  EXPECT_TRUE(contains(dot, "label=\"odd\\\"op\\\\\\n[1]\"")) << dot;

  // cgraph reads the quotes back; backslashes stay escaped for the label's own escape pass.
  const ParsedGraph graph = parse(dot);
  ASSERT_TRUE(graph);
  EXPECT_EQ(node_attribute(graph.get(), "n0", "label"),
            "say \"hi\" \\\\N &amp; bye\\nnext line\\n[1]");
  EXPECT_EQ(agnnodes(graph.get()), 2);

  // Graphviz displays the name literally: two text lines, one backslash, no node-name expansion.
  const std::string svg = render_dot(dot, "svg");
  EXPECT_TRUE(contains(svg, ">say &quot;hi&quot; \\N &amp; bye</text>")) << svg;
  EXPECT_TRUE(contains(svg, ">next line</text>")) << svg;
  EXPECT_TRUE(contains(svg, ">odd&quot;op\\</text>")) << svg;
}

TEST(ToDot, ShowBackwardMarksAFreedGraph) {
  const SmallGraph g = build_small_graph();
  DotOptions options;
  options.show_backward = true;
  EXPECT_TRUE(contains(to_dot(g.loss, options), "mul_backward"));
  g.loss.backward();
  const std::string after = to_dot(g.loss, options);
  EXPECT_FALSE(contains(after, "_backward")) << after;
  EXPECT_TRUE(contains(after, "label=\"sum\\n[]\\n(graph freed)\"")) << after;
  // Without show_backward the text does not change when the graph is freed.
  EXPECT_EQ(to_dot(g.loss), read_file("tests/autograd/golden/small_graph.dot"));
}

TEST(ToDot, LeafAloneIsOneGreenNode) {
  Variable x(Tensor::zeros({4}), false, "alone");
  const ParsedGraph graph = parse(to_dot(x));
  ASSERT_TRUE(graph);
  EXPECT_EQ(agnnodes(graph.get()), 1);
  EXPECT_EQ(agnedges(graph.get()), 0);
  EXPECT_EQ(node_attribute(graph.get(), "n0", "label"), "alone\\n[4]");
  EXPECT_EQ(node_attribute(graph.get(), "n0", "fillcolor"), "darkolivegreen1");
}

TEST(ToDot, LegendAddsOneNodeAndNoEdges) {
  const SmallGraph g = build_small_graph();
  DotOptions options;
  options.show_legend = true;
  const ParsedGraph graph = parse(to_dot(g.loss, options));
  ASSERT_TRUE(graph);
  EXPECT_EQ(agnnodes(graph.get()), static_cast<int>(kSmallGraphVariables) + 1);
  EXPECT_NE(agnode(graph.get(), const_cast<char*>("legend"), 0), nullptr);
  EXPECT_EQ(agnedges(graph.get()), static_cast<int>(kSmallGraphEdges));
}

TEST(ToDot, ChainOf100000NodesDoesNotOverflowTheStack) {
  Variable x(Tensor::ones({1}, DType::Float64), true, "x");
  Variable y = x;
  for (int i = 0; i < 100000; ++i) y = identity(y, "step");
  const std::string dot = to_dot(y);
  EXPECT_TRUE(contains(dot, "  n100000 [label=\"step\\n[1]\", fillcolor=darkolivegreen1];\n"));
  EXPECT_TRUE(contains(dot, "  n99999 -> n100000;\n"));
}

TEST(ToDot, RejectsUndefinedVariableAndUnknownRankdir) {
  EXPECT_THROW(to_dot(Variable()), std::invalid_argument);
  const SmallGraph g = build_small_graph();
  DotOptions options;
  options.rankdir = "TB; evil=1";
  EXPECT_THROW(to_dot(g.loss, options), std::invalid_argument);
}

TEST(RenderDot, SvgIsAnSvgDocumentWithEveryLabel) {
  const SmallGraph g = build_small_graph();
  const std::string svg = render_dot(to_dot(g.loss), "svg");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u) << svg.substr(0, 100);
  EXPECT_TRUE(contains(svg, "<svg"));
  EXPECT_TRUE(contains(svg, "</svg>"));
  EXPECT_TRUE(contains(svg, ">layer.weight</text>"));
  EXPECT_TRUE(contains(svg, ">sum</text>"));
}

TEST(RenderDot, PngHasThePngSignatureAndAPlausibleSize) {
  const SmallGraph g = build_small_graph();
  const std::string png = render_dot(to_dot(g.loss), "png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: width and height, big-endian, at bytes 16..23. Seven boxes need some room.
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned>(static_cast<unsigned char>(png[at])) << 24) |
           (static_cast<unsigned>(static_cast<unsigned char>(png[at + 1])) << 16) |
           (static_cast<unsigned>(static_cast<unsigned char>(png[at + 2])) << 8) |
           static_cast<unsigned>(static_cast<unsigned char>(png[at + 3]));
  };
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_GT(be32(16), 50u);   // width in pixels
  EXPECT_GT(be32(20), 200u);  // height: five ranks, top to bottom
}

TEST(RenderDot, MalformedDotThrowsGraphvizMessageAndLaterCallsStillWork) {
  try {
    render_dot("digraph { a -> ; }", "svg");
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_TRUE(contains(message, "render_dot: the DOT text does not parse")) << message;
    EXPECT_TRUE(contains(message, "syntax error")) << message;
  }
  // The parser recovers: the next render works.
  EXPECT_TRUE(contains(render_dot("digraph { a -> b; }", "svg"), "<svg"));
}

TEST(RenderDot, UnknownFormatThrowsNamingIt) {
  try {
    render_dot("digraph { a -> b; }", "no-such-format");
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), "no-such-format")) << e.what();
  }
}

TEST(RenderDot, ConcurrentCallsAreSerialisedAndAllSucceed) {
  const SmallGraph g = build_small_graph();
  const std::string dot = to_dot(g.loss);
  const std::string expected = render_dot(dot, "svg");
  std::vector<std::string> results(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < results.size(); ++t)
    threads.emplace_back([&, t] { results[t] = render_dot(dot, "svg"); });
  for (auto& thread : threads) thread.join();
  for (const auto& svg : results) EXPECT_EQ(svg, expected);
}

TEST(WriteGraph, WritesDotTextAndRenderedFormats) {
  const SmallGraph g = build_small_graph();
  const auto dir =
      std::filesystem::temp_directory_path() / ("dot_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string dot_path = (dir / "graph.dot").string();
  const std::string svg_path = (dir / "graph.svg").string();
  write_graph(g.loss, dot_path, "dot");
  write_graph(g.loss, svg_path, "svg", {.title = "small"});
  EXPECT_EQ(read_file(dot_path), to_dot(g.loss));
  EXPECT_EQ(read_file(svg_path), render_dot(to_dot(g.loss, {.title = "small"}), "svg"));
  // A failed render leaves the old file as it was and no temporary file behind.
  EXPECT_THROW(write_graph(g.loss, svg_path, "no-such-format"), std::runtime_error);
  EXPECT_EQ(read_file(svg_path), render_dot(to_dot(g.loss, {.title = "small"}), "svg"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            2);
  std::filesystem::remove_all(dir);
}
