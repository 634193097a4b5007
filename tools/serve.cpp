// lenet serve: the draw-a-digit web page and its JSON API (tools/server.hpp), until Ctrl-C.
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <iostream>
#include <mutex>
#include <thread>

#include "tools/cli.hpp"
#include "tools/server.hpp"

namespace cli {

namespace {
int stop_pipe[2] = {-1, -1};  // written by the signal handler, read by the stopper thread
// Where tools/run serve installs onnxruntime-web (tools/web/package.json).
constexpr const char* kOnnxRuntimeWeb = "tools/web/node_modules/onnxruntime-web/dist";
}  // namespace

int serve(const std::vector<std::string>& args) {
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  web::ServerOptions server_options{
      .model = entry.name, .weights = default_weights(entry), .onnxruntime_web = kOnnxRuntimeWeb};
  std::string host = "127.0.0.1";
  int port = 8080;
  po::options_description options("options");
  add_model_option(options);
  options.add_options()
      ("weights", po::value(&server_options.weights)->default_value(server_options.weights), "weights file (safetensors)")
      ("host", po::value(&host)->default_value(host), "address to listen on (0.0.0.0: every interface)")
      ("port", po::value(&port)->default_value(port), "port to listen on (0: any free port)")
      ("threads", po::value(&server_options.threads)->default_value(server_options.threads), "worker threads (1 to 64)")
      ("onnxruntime-web", po::value(&server_options.onnxruntime_web)->default_value(server_options.onnxruntime_web),
       "onnxruntime-web's dist/ directory: the page also runs the model in the browser");
  po::variables_map vm;
  if (!parse("serve", "[--model NAME] [--weights FILE] [--host ADDRESS] [--port N] [--threads N] [--onnxruntime-web DIR]",
             options, args, vm))
    return 0;
  if (port < 0 || port > 65535) throw UsageError("--port must be from 0 to 65535, got " + std::to_string(port));
  if (server_options.threads < 1 || server_options.threads > 64)
    throw UsageError("--threads must be from 1 to 64, got " + std::to_string(server_options.threads));

  server_options.weights = resolve_path(vm, "weights");
  try {
    server_options.onnxruntime_web = resolve_path(vm, "onnxruntime-web");
  } catch (const MissingPath&) {  // only the default can be missing: the page does without it
    server_options.onnxruntime_web.clear();
  }

  std::mutex log_mutex;
  web::DigitServer server(server_options, [&log_mutex](const std::string& line) {
    std::lock_guard lock(log_mutex);
    std::cerr << line << '\n';
  });
  const int bound = server.bind(host, port);
  const std::string shown_host = host.find(':') == std::string::npos ? host : "[" + host + "]";
  std::cout << "serving " << entry.name << " (" << server_options.weights << ") on http://" << shown_host << ':' << bound
            << "/  (Ctrl-C to stop)" << std::endl;
  if (server_options.onnxruntime_web.empty())
    std::cerr << "lenet serve: no " << kOnnxRuntimeWeb << ": the page runs the model on the server only "
              << "(tools/run serve installs onnxruntime-web)" << std::endl;

  // SIGINT and SIGTERM stop the server through a pipe: the handler only writes a byte (all it may
  // safely do), and a thread that waits on the pipe calls stop() as ordinary code. (Blocking the
  // signals for sigwait would have to happen before any library starts a thread, or those threads
  // would take them.)
  if (::pipe(stop_pipe) != 0) throw std::runtime_error("cannot create a pipe for signals");
  struct sigaction on_stop {};
  on_stop.sa_handler = [](int) { [[maybe_unused]] const auto n = ::write(stop_pipe[1], "s", 1); };
  sigemptyset(&on_stop.sa_mask);
  ::sigaction(SIGINT, &on_stop, nullptr);
  ::sigaction(SIGTERM, &on_stop, nullptr);

  std::thread stopper([&server] {
    char byte = 0;
    while (::read(stop_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    server.stop();
  });
  server.listen();
  // listen() returns after stop(), or if the socket fails: then the stopper is woken here.
  [[maybe_unused]] const auto n = ::write(stop_pipe[1], "s", 1);
  stopper.join();
  std::cout << "stopped" << std::endl;
  return 0;
}

}  // namespace cli
