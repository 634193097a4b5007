// The draw-a-digit web server: a registered model behind a small JSON API, plus the page in tools/web/ (embedded
// in the binary), on cpp-httplib with every limit set. `lenet serve` runs it; the tests start it
// in-process on a free port.
//
//   GET  /                 the page (index.html, app.js, style.css, served from memory)
//   POST /api/predict      image -> {"digit", "probabilities", "input28", "latency_us"}
//   POST /api/features     image -> {"layers": [the feature maps of every convolutional stage]}
//   GET  /api/model        layers, parameter shapes and counts, test accuracy from the weights file
//   GET  /api/graph.svg    the model's graph from the engine's DOT export (rendered at start-up)
//   GET  /model.onnx       the model's ONNX export (models/export/onnx.hpp, made at start-up)
//   GET  /onnxruntime/F    onnxruntime-web's WebAssembly build, when given: the page runs
//                          /model.onnx in the browser with it, beside the server's answer
//   GET  /healthz          {"status": "ok"}
//
// An image is a JSON body {"width": W, "height": H, "pixels": [W*H grey values 0..255]} or a PNG
// body (Content-Type image/png). It goes through models/digit_image, the code `lenet predict` uses.
// Every client mistake is answered with a 4xx status and {"error": "<one line>"}.
#pragma once

#include <cstddef>
#include <ctime>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "models/data/digit_image.hpp"

namespace web {

struct ServerOptions {
  std::string model = "lenet5";  // a registered name; it must take [1, 28, 28] images
  std::string weights = "models/lenet5.safetensors";
  /// onnxruntime-web's dist/ directory, whose WebAssembly build is served under /onnxruntime/ (read
  /// at start-up); empty: the page runs the model on the server only.
  std::string onnxruntime_web;
  std::size_t threads = 4;                       // worker threads, each serving one connection
  std::size_t max_queued_connections = 64;       // accepted, waiting for a worker; then accept waits
  std::size_t max_body_bytes = 1 << 20;          // larger bodies: 413 before a byte of them is read
  std::time_t read_timeout_seconds = 5;          // per read, while a request arrives
  std::time_t write_timeout_seconds = 5;         // per write, while a response leaves
  std::time_t keep_alive_timeout_seconds = 2;    // an idle connection holds a worker this long
  std::size_t keep_alive_max_requests = 100;     // then the connection is closed
};

/// Receives one log line per request (no trailing newline), from any worker thread.
using LogSink = std::function<void(const std::string& line)>;

/// A client mistake: its HTTP status and the one-line message the client gets as {"error": ...}.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status(status) {}
  int status;
};

/// The image in a request body: JSON {"width", "height", "pixels"} or a PNG, chosen by the
/// Content-Type (parameters such as "; charset=utf-8" are ignored). Throws HttpError: 400 for a
/// malformed body (bad JSON, wrong sizes, a pixel that is not a number in 0..255, an undecodable
/// PNG), 415 for any other Content-Type.
nn::GrayImage image_from_body(std::string_view body, std::string_view content_type);

/// The server: loads the model's weights, renders its graph, exports it to ONNX and reads
/// onnxruntime-web's files when constructed (throws, naming the file, if the weights or a runtime
/// file cannot be read; naming the model if it is not registered or takes other images than 28x28
/// digits; a model without an ONNX form is served without /model.onnx), then serves after bind()
/// and listen().
class DigitServer {
 public:
  DigitServer(const ServerOptions& options, LogSink log);
  ~DigitServer();
  DigitServer(const DigitServer&) = delete;
  DigitServer& operator=(const DigitServer&) = delete;

  /// Binds host:port; port 0 picks a free port. Returns the port. Throws std::runtime_error with a
  /// one-line message (e.g. the port is in use) if it cannot.
  int bind(const std::string& host, int port);
  /// Serves on the bound socket until stop() is called (from another thread). Blocks.
  void listen();
  /// Stops listening; listen() returns once the connections being served are done.
  void stop();
  /// True once listen() has started accepting connections.
  bool is_running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace web
