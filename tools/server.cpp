// The draw-a-digit server: request bodies to images, the API's handlers, and the HTTP limits on
// cpp-httplib 0.11 (Debian 12), a compiled library whose limits are runtime setters, whose default
// body size is unlimited and whose default exception handling echoes exception text to the client.
#include "tools/server.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "autograd/dot.hpp"
#include "autograd/engine.hpp"
#include "autograd/file.hpp"
#include "models/export/onnx.hpp"
#include "models/nn/weights.hpp"
#include "models/registry.hpp"
#include "ops/fusion/fusion.hpp"
#include "tools/web_assets.hpp"

namespace web {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Client-supplied text may be any bytes: invalid UTF-8 is replaced rather than thrown about.
std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// ---------------------------------------------------------------------------------------------
// Request bodies -> images

// Largest width or height a request's image may have, checked before anything is allocated: a
// 2048 x 2048 image costs 16 MiB as floats. (A PNG of 1 MB could otherwise claim 8192 x 8192.)
constexpr std::int64_t kMaxRequestSide = 2048;

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// "Image/PNG; charset=x" -> "image/png"
std::string media_type(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) type.remove_prefix(1);
  while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) type.remove_suffix(1);
  return lowercase(type);
}

std::string single_quoted(std::string_view text, std::size_t max_length = 64) {
  return "'" + std::string(text.substr(0, max_length)) + (text.size() > max_length ? "...'" : "'");
}

std::int64_t image_side(const json& document, const std::string& key) {
  const auto it = document.find(key);
  if (it == document.end()) throw HttpError(400, "missing \"" + key + "\"");
  const double value = it->is_number() ? it->get<double>() : NAN;
  if (!(value >= 1 && value <= kMaxRequestSide && value == std::floor(value)))
    throw HttpError(400, "\"" + key + "\" must be a whole number from 1 to " +
                             std::to_string(kMaxRequestSide) + ", got " + dump(*it).substr(0, 64));
  return static_cast<std::int64_t>(value);
}

nn::GrayImage image_from_json(std::string_view body) {
  // Values nested deeper than the pixel array's elements are dropped while parsing (they become
  // empty arrays, which fail validation below), so a megabyte of '[' costs no memory.
  const json document = json::parse(
      body.begin(), body.end(), [](int depth, json::parse_event_t, json&) { return depth <= 2; },
      /*allow_exceptions=*/false);
  if (document.is_discarded()) throw HttpError(400, "the body is not valid JSON");
  if (!document.is_object())
    throw HttpError(400, R"(expected a JSON object {"width": W, "height": H, "pixels": [W*H values]})");
  nn::GrayImage image;
  image.width = image_side(document, "width");
  image.height = image_side(document, "height");
  const auto pixels = document.find("pixels");
  if (pixels == document.end() || !pixels->is_array())
    throw HttpError(400, "\"pixels\" must be an array of width x height grey values (0..255)");
  const auto expected = static_cast<std::size_t>(image.width * image.height);
  if (pixels->size() != expected)
    throw HttpError(400, "\"pixels\" has " + std::to_string(pixels->size()) + " values, width x height is " +
                             std::to_string(expected));
  image.pixels.reserve(expected);
  for (std::size_t i = 0; i < expected; ++i) {
    const json& pixel = (*pixels)[i];
    const double value = pixel.is_number() ? pixel.get<double>() : NAN;
    if (!(value >= 0 && value <= 255))  // also refuses NaN and non-numbers
      throw HttpError(400, "pixels[" + std::to_string(i) + "] must be a number from 0 to 255, got " +
                               dump(pixel).substr(0, 64));
    image.pixels.push_back(static_cast<float>(value));
  }
  return image;
}

// Reads a PNG's width and height from its IHDR chunk, which the format requires to come first, so an
// oversized image is refused before it is decoded; anything malformed is left to the decoder.
void check_png_size(std::string_view bytes) {
  constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  if (bytes.size() < 24 || bytes.substr(0, 8) != kSignature || bytes.substr(12, 4) != "IHDR") return;
  auto big_endian = [&](std::size_t at) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 4; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
    return value;
  };
  const std::uint32_t width = big_endian(16), height = big_endian(20);
  if (width > kMaxRequestSide || height > kMaxRequestSide)
    throw HttpError(400, "PNG body: " + std::to_string(width) + " x " + std::to_string(height) +
                             " is larger than " + std::to_string(kMaxRequestSide) + " x " +
                             std::to_string(kMaxRequestSide));
}

// The preprocessed 28x28 digit of a request, as `lenet predict` would make it from a file.
nn::Digit digit_from_request(const httplib::Request& request) {
  const nn::Digit digit =
      nn::preprocess_digit(image_from_body(request.body, request.get_header_value("Content-Type")));
  if (nn::is_blank(digit)) throw HttpError(400, "no ink found: the image is one flat colour");
  return digit;
}

// ---------------------------------------------------------------------------------------------
// Responses

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_header("Cache-Control", "no-store");
  response.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message) {
  send_json(response, status, {{"error", message}});
}

std::string reason(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 408: return "request timeout";
    case 411: return "length required";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 415: return "unsupported media type";
    case 416: return "range not satisfiable";
    case 500: return "internal server error";
    case 503: return "service unavailable";
    default: return "error " + std::to_string(status);
  }
}

// Runs a JSON endpoint: its result is sent with 200, an HttpError as its status and message.
// Anything else is a bug and goes to the exception handler (500, message logged, not sent).
template <class Endpoint>
void respond(httplib::Response& response, Endpoint&& endpoint) {
  try {
    send_json(response, 200, endpoint());
  } catch (const HttpError& e) {
    send_error(response, e.status, e.what());
  }
}

// Decimal places kept when sending floats: the page draws them, nobody needs float32's 9 digits.
json rounded(const float* values, std::int64_t count, double scale) {
  json out = json::array();
  for (std::int64_t i = 0; i < count; ++i) out.push_back(std::round(values[i] * scale) / scale);
  return out;
}

// A [1, C, H, W] activation as {"channels", "height", "width", "maps": [C arrays of H*W values]}.
json feature_maps(const ag::Tensor& activation) {
  const std::int64_t channels = activation.size(1), height = activation.size(2), width = activation.size(3);
  json maps = json::array();
  for (std::int64_t c = 0; c < channels; ++c)
    maps.push_back(rounded(activation.data<float>() + c * height * width, height * width, 1e4));
  return {{"channels", channels}, {"height", height}, {"width", width}, {"maps", maps}};
}

std::int64_t microseconds_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

// A number recorded in the weights' metadata ("test_accuracy": "0.991200"), or null.
json metadata_number(const nn::Metadata& metadata, const std::string& key) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) return nullptr;
  try {
    std::size_t used = 0;
    const double value = std::stod(it->second, &used);
    if (used == it->second.size() && std::isfinite(value)) return value;
  } catch (const std::exception&) {  // not a number: reported as absent
  }
  return nullptr;
}

// The layer a value belongs to: the module of the nearest parameter it was computed from
// ("conv1.weight" -> "conv1"), looking up through a few ops (a scaled activation's multiply);
// its op's name when none is near.
std::string layer_of(const ag::Variable& value) {
  std::vector<ag::Variable> frontier{value};
  for (int depth = 0; depth < 4 && !frontier.empty(); ++depth) {
    std::vector<ag::Variable> next;
    for (const ag::Variable& v : frontier) {
      if (v.is_leaf()) continue;
      for (const ag::Variable& input : v.node()->inputs) {
        const std::string& name = input.name();
        if (input.is_leaf() && name.find('.') != std::string::npos) return name.substr(0, name.rfind('.'));
        next.push_back(input);
      }
    }
    frontier = std::move(next);
  }
  return std::string(value.node()->op);
}

// onnxruntime-web's files the page loads from its dist/ directory: the ES module of its
// WebAssembly build, the module that one imports, and the WebAssembly it compiles.
struct RuntimeFile {
  std::string name, content_type, bytes;
};
const std::pair<const char*, const char*> kRuntimeFiles[] = {
    {"ort.wasm.min.mjs", "text/javascript"},
    {"ort-wasm-simd-threaded.mjs", "text/javascript"},
    {"ort-wasm-simd-threaded.wasm", "application/wasm"},
};

json describe_model(const nn::ModelEntry& entry, const nn::Model& model, const nn::Metadata& metadata,
                    const std::string& weights) {
  // Layers in registration order, each with its parameters ("conv1.weight" belongs to "conv1").
  json layers = json::array();
  for (const auto& [name, parameter] : model.named_parameters()) {
    const std::string layer = name.substr(0, name.find('.'));
    if (layers.empty() || layers.back()["name"] != layer)
      layers.push_back({{"name", layer}, {"parameters", json::array()}, {"parameter_count", 0}});
    const std::int64_t count = parameter.value().numel();
    layers.back()["parameters"].push_back({{"name", name}, {"shape", parameter.shape()}, {"count", count}});
    layers.back()["parameter_count"] = layers.back()["parameter_count"].get<std::int64_t>() + count;
  }
  const auto text = [&](const std::string& key) -> json {
    const auto it = metadata.find(key);
    return it == metadata.end() ? json(nullptr) : json(it->second);
  };
  const nn::InputSpec& input = model.input();
  const nn::Normalization& normalization = input.normalization;
  return {{"name", entry.name},
          {"description", entry.description},
          {"input_shape", {input.channels, input.height, input.width}},
          {"layers", layers},
          {"parameter_count", model.parameter_count()},
          {"test_accuracy", metadata_number(metadata, "test_accuracy")},
          {"test_loss", metadata_number(metadata, "test_loss")},
          {"dataset", text("dataset")},
          {"weights", std::filesystem::path(weights).filename().string()},
          {"normalization", {{"mean", normalization.mean}, {"std", normalization.std}}}};
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

// Printable ASCII only, cut to a length: a request path must not forge or flood log lines.
std::string printable(std::string_view text, std::size_t max_length = 200) {
  std::string out;
  for (const char c : text.substr(0, max_length)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > max_length) out += "...";
  return out;
}

// When the current request's routing began; set by the pre-routing handler on the worker thread
// that then writes the response and logs it. Unset for requests refused before routing (a bad
// request line, say), which are logged without a time.
thread_local std::optional<Clock::time_point> request_start;

// Runs after a request's headers are read and before any of its body is: refuses a body whose size
// is unknown (chunked, no Content-Length), unbounded once decoded (compressed) or over the limit,
// so the server never reads more than max_body bytes of one.
std::optional<std::pair<int, std::string>> refusal(const httplib::Request& request, std::size_t max_body) {
  if (request.has_header("Transfer-Encoding"))
    return {{411, "chunked request bodies are not accepted: send a Content-Length"}};
  const std::string encoding = lowercase(request.get_header_value("Content-Encoding"));
  if (!encoding.empty() && encoding != "identity")
    return {{415, "compressed request bodies are not accepted"}};
  const std::size_t lengths = request.get_header_value_count("Content-Length");
  if (lengths == 0) {
    const bool has_body = request.method == "POST" || request.method == "PUT" || request.method == "PATCH";
    if (has_body) return {{411, "a request body needs a Content-Length header"}};
    return std::nullopt;
  }
  const std::string length = request.get_header_value("Content-Length");
  if (lengths > 1 || length.empty() || length.size() > 18 || !std::ranges::all_of(length, [](unsigned char c) { return std::isdigit(c) != 0; }))
    return {{400, "Content-Length must be one decimal number"}};
  if (std::stoull(length) > max_body)
    return {{413, "the request body is larger than " + std::to_string(max_body) + " bytes"}};
  return std::nullopt;
}

// httplib's own pool queues accepted connections without bound. This one makes the accept loop
// wait once max_queued connections are waiting, so a flood stays in the kernel's listen backlog.
class BoundedThreadPool final : public httplib::TaskQueue {
 public:
  BoundedThreadPool(std::size_t threads, std::size_t max_queued) : max_queued_(max_queued) {
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~BoundedThreadPool() override { shutdown(); }

  void enqueue(std::function<void()> task) override {
    std::unique_lock lock(mutex_);
    has_room_.wait(lock, [&] { return queue_.size() < max_queued_ || stopping_; });
    queue_.push_back(std::move(task));
    has_task_.notify_one();
  }

  // Serves what is queued, then joins the workers.
  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    has_task_.notify_all();
    has_room_.notify_all();
    for (std::thread& worker : workers_)
      if (worker.joinable()) worker.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        has_task_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      has_room_.notify_one();
      try {
        task();  // httplib catches what handlers throw; this keeps a worker alive past anything else
      } catch (...) {
      }
    }
  }

  const std::size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable has_task_, has_room_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

nn::GrayImage image_from_body(std::string_view body, std::string_view content_type) {
  const std::string type = media_type(content_type);
  if (type == "application/json") return image_from_json(body);
  if (type == "image/png") {
    check_png_size(body);
    try {
      return nn::decode_png(body, "PNG body");
    } catch (const nn::ImageError& e) {
      throw HttpError(400, e.what());
    }
  }
  throw HttpError(415, "Content-Type must be application/json or image/png, got " + single_quoted(type));
}

// ---------------------------------------------------------------------------------------------
// The server

struct DigitServer::Impl {
  Impl(const ServerOptions& options, LogSink log);

  void log_line(const std::string& line) const;
  void set_limits();
  void set_routes();
  json predict(const httplib::Request& request) const;
  json features(const httplib::Request& request) const;

  ServerOptions options;
  LogSink log;
  const nn::ModelEntry& entry;
  std::unique_ptr<nn::Model> model;
  std::string model_json;  // GET /api/model, built once
  std::string graph_svg;   // GET /api/graph.svg, rendered once; empty if Graphviz failed
  std::string onnx_model;  // GET /model.onnx, exported once; empty if the model has no ONNX form
  std::vector<RuntimeFile> runtime_files;  // GET /onnxruntime/NAME; none without options.onnxruntime_web
  httplib::Server http;
  // listen() and stop() may race (a signal arrives as the server starts): see stop().
  std::atomic<bool> stop_requested{false}, listening{false}, listen_returned{false};
};

DigitServer::Impl::Impl(const ServerOptions& opts, LogSink sink)
    : options(opts), log(std::move(sink)), entry(nn::find_model(opts.model)) {
  ag::Generator generator{0};  // initial weights, all overwritten by the file's
  model = entry.make(generator);
  const nn::InputSpec& input = model->input();
  if (input.channels != 1 || input.height != 28 || input.width != 28)
    throw std::runtime_error("model " + entry.name + " takes " + ag::shape_str(model->input_shape(1)) +
                             " inputs; the server makes [1, 1, 28, 28] digits");
  const nn::Metadata metadata = nn::load_weights(*model, options.weights, entry.name);
  // Inference runs on all worker threads at once against this one model: in eval mode and under
  // a (thread-local) NoGradGuard, the forward only reads the parameters and allocates its outputs.
  model->eval();
  try {
    onnx_model = nn::export_onnx(*model, {.model_name = entry.name,
                                          .metadata = nn::onnx_metadata_of_weights(metadata, options.weights)});
  } catch (const nn::OnnxExportError& e) {
    log_line("no /model.onnx: " + printable(e.what()));
  }
  if (!options.onnxruntime_web.empty())
    for (const auto& [name, content_type] : kRuntimeFiles)
      runtime_files.push_back(
          {name, content_type, ag::read_file((std::filesystem::path(options.onnxruntime_web) / name).string())});
  json description = describe_model(entry, *model, metadata, options.weights);
  description["onnx_in_browser"] = !onnx_model.empty() && !runtime_files.empty();
  model_json = dump(description);
  try {
    const ag::Variable graph_input(ag::Tensor(model->input_shape(1)), false, "input");
    const ag::DotOptions dot{.title = entry.name, .rankdir = "TB"};
    graph_svg = ag::render_dot(ag::to_dot((*model)(graph_input), dot), "svg");
  } catch (const std::exception& e) {
    log_line("graph unavailable: " + printable(e.what()));
  }
  set_limits();
  set_routes();
}

void DigitServer::Impl::log_line(const std::string& line) const {
  if (log) log(line);
}

void DigitServer::Impl::set_limits() {
  // httplib's default socket options add SO_REUSEPORT, with which a second server binds the same
  // port and silently shares its connections. SO_REUSEADDR alone still allows a quick restart.
  http.set_socket_options([](socket_t socket) {
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // httplib sends a response's headers and body in two writes. With Nagle's algorithm the body then
  // waits for the client's delayed ACK of the headers: 40 ms per request on a keep-alive
  // connection (tools/load_test; docs/reliability.md, "Server under load"). Accepted sockets
  // inherit TCP_NODELAY from the listening one.
  http.set_tcp_nodelay(true);
  http.set_payload_max_length(options.max_body_bytes);  // behind the pre-routing check, as a backstop
  http.set_read_timeout(options.read_timeout_seconds, 0);
  http.set_write_timeout(options.write_timeout_seconds, 0);
  http.set_keep_alive_timeout(options.keep_alive_timeout_seconds);
  http.set_keep_alive_max_count(options.keep_alive_max_requests);
  const std::size_t threads = options.threads, queued = options.max_queued_connections;
  http.new_task_queue = [threads, queued] { return new BoundedThreadPool(threads, queued); };

  http.set_default_headers({
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      // 'wasm-unsafe-eval': onnxruntime-web compiles its WebAssembly; nothing else is evaluated.
      {"Content-Security-Policy",
       "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
  });

  const std::size_t max_body = options.max_body_bytes;
  http.set_pre_routing_handler([max_body](const httplib::Request& request, httplib::Response& response) {
    request_start = Clock::now();
    const auto refused = refusal(request, max_body);
    if (!refused) return httplib::Server::HandlerResponse::Unhandled;
    // The body was not read, so the connection cannot carry another request.
    response.set_header("Connection", "close");
    send_error(response, refused->first, refused->second);
    return httplib::Server::HandlerResponse::Handled;
  });

  // A client that asks before sending its body (Expect: 100-continue, as curl does for large
  // ones) is refused the same way, and then never sends it.
  http.set_expect_100_continue_handler([max_body](const httplib::Request& request, httplib::Response& response) {
    request_start = Clock::now();
    const auto refused = refusal(request, max_body);
    if (!refused) return 100;
    response.set_header("Connection", "close");
    send_error(response, refused->first, refused->second);
    return refused->first;
  });

  // Every 4xx/5xx gets a JSON body; the handlers' own messages are kept.
  http.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (response.body.empty()) send_error(response, response.status, reason(response.status));
  });

  // A bug, not a client mistake: the client gets a generic message (httplib would send what()).
  http.set_exception_handler([this](const httplib::Request& request, httplib::Response& response,
                                    std::exception_ptr exception) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(exception);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log_line("internal error in " + request.method + " " + printable(request.path) + ": " + printable(what, 500));
    send_error(response, 500, reason(500));
  });

  http.set_logger([this](const httplib::Request& request, const httplib::Response& response) {
    const std::string time = request_start ? std::to_string(microseconds_since(*request_start)) + "us" : "-";
    request_start.reset();
    // A request whose first line could not be parsed has neither method nor path.
    const auto or_dash = [](const std::string& text) { return text.empty() ? std::string("-") : printable(text); };
    log_line(or_dash(request.method) + " " + or_dash(request.path) + " " +
             std::to_string(response.status) + " " + time);
  });
}

json DigitServer::Impl::predict(const httplib::Request& request) const {
  const Clock::time_point start = Clock::now();
  const nn::Digit digit = digit_from_request(request);
  const nn::Prediction prediction =
      nn::classify(*model, nn::to_input_tensor(digit, model->input().normalization)).front();
  return {{"digit", prediction.digit},
          {"probabilities", prediction.probabilities},
          {"input28", rounded(digit.data(), static_cast<std::int64_t>(digit.size()), 1e3)},
          {"latency_us", microseconds_since(start)}};
}

json DigitServer::Impl::features(const httplib::Request& request) const {
  const Clock::time_point start = Clock::now();
  const nn::Digit digit = digit_from_request(request);
  // The forward op by op (no fusion), recorded with the input requiring grad so that the graph
  // keeps every intermediate value. The feature maps are the image-shaped outputs of the
  // activations ([1, C, H, W] after relu, tanh or sigmoid, before any pooling), in the order the
  // forward computed them: what each convolutional stage responds to, at its full resolution.
  const ag::NoFusionGuard unfused;
  const ag::Variable x(nn::to_input_tensor(digit, model->input().normalization), /*requires_grad=*/true);
  const ag::Variable output = (*model)(x);
  const ag::VariableOrder order = ag::reverse_topological_order(output);
  json layers = json::array();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const ag::Variable& v = *it;
    if (v.is_leaf() || v.shape().size() != 4) continue;
    const std::string_view op = v.node()->op;
    if (op != "relu" && op != "tanh" && op != "sigmoid") continue;
    json maps = feature_maps(v.value());
    maps["name"] = layer_of(v);
    maps["activation"] = std::string(op);
    layers.push_back(std::move(maps));
  }
  return {{"stage", "after the activation, before pooling"},
          {"layers", layers},
          {"latency_us", microseconds_since(start)}};
}

void DigitServer::Impl::set_routes() {
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
    send_json(response, 200, {{"status", "ok"}});
  });
  http.Get("/api/model", [this](const httplib::Request&, httplib::Response& response) {
    response.set_header("Cache-Control", "no-store");
    response.set_content(model_json, "application/json");
  });
  http.Get("/api/graph.svg", [this](const httplib::Request&, httplib::Response& response) {
    if (graph_svg.empty()) return send_error(response, 503, "the graph could not be rendered (Graphviz)");
    response.set_header("Cache-Control", "no-cache");
    response.set_content(graph_svg, "image/svg+xml");
  });
  http.Post("/api/predict", [this](const httplib::Request& request, httplib::Response& response) {
    respond(response, [&] { return predict(request); });
  });
  http.Post("/api/features", [this](const httplib::Request& request, httplib::Response& response) {
    respond(response, [&] { return features(request); });
  });
  for (const char* path : {"/api/predict", "/api/features"}) {
    http.Get(path, [](const httplib::Request&, httplib::Response& response) {
      response.set_header("Allow", "POST");
      send_error(response, 405, "use POST with a JSON or PNG body");
    });
  }
  http.Get("/model.onnx", [this](const httplib::Request&, httplib::Response& response) {
    if (onnx_model.empty()) return send_error(response, 404, "the model has no ONNX form");
    response.set_header("Cache-Control", "no-cache");
    response.set_content(onnx_model, "application/octet-stream");
  });
  // onnxruntime-web from memory, likewise looked up by name.
  http.Get(R"(/onnxruntime/([^/]+))", [this](const httplib::Request& request, httplib::Response& response) {
    for (const RuntimeFile& file : runtime_files) {
      if (file.name != request.matches[1].str()) continue;
      response.set_header("Cache-Control", "no-cache");
      response.set_content(file.bytes, file.content_type);
      return;
    }
    send_error(response, 404, "not found");
  });
  // The page, from memory: the path is looked up among the embedded files, never opened.
  http.Get(R"(/[^/]*)", [](const httplib::Request& request, httplib::Response& response) {
    const std::string path = request.path == "/" ? "/index.html" : request.path;
    for (const Asset& asset : embedded_assets()) {
      if (asset.path != path) continue;
      response.set_header("Cache-Control", "no-cache");
      response.set_content(asset.bytes.data(), asset.bytes.size(), std::string(asset.content_type));
      return;
    }
    send_error(response, 404, "not found");
  });
}

DigitServer::DigitServer(const ServerOptions& options, LogSink log)
    : impl_(std::make_unique<Impl>(options, std::move(log))) {}

DigitServer::~DigitServer() = default;

int DigitServer::bind(const std::string& host, int port) {
  errno = 0;
  const int bound = port == 0 ? impl_->http.bind_to_any_port(host)
                              : (impl_->http.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    const int error = errno;
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) +
                             (error ? std::string(": ") + std::strerror(error) : std::string()));
  }
  return bound;
}

void DigitServer::listen() {
  impl_->listening = true;
  if (!impl_->stop_requested) impl_->http.listen_after_bind();
  impl_->listen_returned = true;
}

void DigitServer::stop() {
  impl_->stop_requested = true;
  // httplib's stop() does nothing until listening has begun: wait out the moment between
  // listen() being entered and the accept loop running.
  while (impl_->listening && !impl_->listen_returned && !impl_->http.is_running())
    std::this_thread::yield();
  impl_->http.stop();
}

bool DigitServer::is_running() const { return impl_->http.is_running(); }

}  // namespace web
