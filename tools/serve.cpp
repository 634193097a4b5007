// lenet serve: the draw-a-digit web page and its JSON API (tools/server.hpp), until Ctrl-C.
#include <cblas.h>
#include <pthread.h>

#include <csignal>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <thread>

#include "tools/cli.hpp"
#include "tools/server.hpp"

namespace cli {

int serve(const std::vector<std::string>& args) {
  web::ServerOptions server_options;
  std::string host = "127.0.0.1";
  int port = 8080;
  po::options_description options("options");
  options.add_options()
      ("weights", po::value(&server_options.weights)->default_value(server_options.weights), "weights file (safetensors)")
      ("host", po::value(&host)->default_value(host), "address to listen on (0.0.0.0: every interface)")
      ("port", po::value(&port)->default_value(port), "port to listen on (0: any free port)")
      ("threads", po::value(&server_options.threads)->default_value(server_options.threads), "worker threads (1 to 64)");
  po::variables_map vm;
  if (!parse("serve", "[--weights FILE] [--host ADDRESS] [--port N] [--threads N]", options, args, vm))
    return 0;
  if (port < 0 || port > 65535) throw UsageError("--port must be from 0 to 65535, got " + std::to_string(port));
  if (server_options.threads < 1 || server_options.threads > 64)
    throw UsageError("--threads must be from 1 to 64, got " + std::to_string(server_options.threads));

  // The workers serve one request each in parallel; OpenBLAS inside them must not add threads.
  openblas_set_num_threads(1);

  // SIGINT and SIGTERM are taken by one thread with sigwait (blocked everywhere else, including the
  // server's threads, which inherit the mask), so stopping runs as ordinary code, not in a handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::mutex log_mutex;
  web::DigitServer server(server_options, [&log_mutex](const std::string& line) {
    std::lock_guard lock(log_mutex);
    std::cerr << line << '\n';
  });
  const int bound = server.bind(host, port);
  const std::string shown_host = host.find(':') == std::string::npos ? host : "[" + host + "]";
  std::cout << "serving LeNet-5 (" << server_options.weights << ") on http://" << shown_host << ':' << bound
            << "/  (Ctrl-C to stop)" << std::endl;

  std::thread signal_waiter([&server, &stop_signals] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    server.stop();
  });
  server.listen();
  // listen() only returns after stop() (or if the socket fails): wake the waiter if it still waits.
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  std::cout << "stopped" << std::endl;
  return 0;
}

}  // namespace cli
