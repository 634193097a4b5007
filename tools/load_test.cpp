// load_test: sustained concurrent load on `lenet serve` over loopback, every answer checked.
//
//   load_test --url http://127.0.0.1:PORT [--clients 8] [--seconds 60] [--data data/mnist] [--png]
//             [--abuse] [--pid SERVER_PID]
//
// A warm-up pass sends each test digit once and records the server's answer; then each client
// thread loops over the digits on its own keep-alive connection until --seconds have passed, and
// every answer must be 200, valid JSON, and the warm-up's digit. --abuse adds a thread sending a few
// bad requests per second (oversized Content-Length, malformed JSON, garbage PNG), each of which
// must get its 4xx. Prints requests/s, latency percentiles, errors, mismatches and (with --pid) the
// server's memory; exits 1 if anything was wrong. Run on demand: docs/reliability.md.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "models/data/digit_image.hpp"
#include "models/data/mnist.hpp"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace po = boost::program_options;

struct Body {
  std::string content, content_type;
};

// Test digit `index` as a page draws it (dark ink on white), as a JSON or PNG request body.
Body digit_body(const nn::MnistSplit& split, std::int64_t index, bool png) {
  nn::GrayImage image{.width = 28, .height = 28, .pixels = {}};
  for (std::int64_t i = 0; i < 784; ++i)
    image.pixels.push_back(255.0F - split.images[static_cast<std::size_t>(index * 784 + i)]);
  if (png) return {nn::encode_png(image), "image/png"};
  json pixels = json::array();
  for (const float p : image.pixels) pixels.push_back(static_cast<int>(p));
  return {json{{"width", 28}, {"height", 28}, {"pixels", pixels}}.dump(), "application/json"};
}

// The digit in a 200 answer, or -1 for anything else (no answer, another status, bad JSON).
int answered_digit(const httplib::Result& response) {
  if (!response || response->status != 200) return -1;
  const json answer = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object() || !answer.contains("digit") || !answer["digit"].is_number_integer()) return -1;
  return answer["digit"].get<int>();
}

// "VmRSS 12345 kB  VmHWM 23456 kB" from /proc/PID/status.
std::string server_memory(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line, out;
  while (std::getline(status, line))
    if (line.starts_with("VmRSS:") || line.starts_with("VmHWM:"))
      out += (out.empty() ? "" : "  ") + std::regex_replace(line, std::regex(":\\s+"), " ");
  return out.empty() ? "(process " + std::to_string(pid) + " not found)" : out;
}

// Sends a POST announcing a 100 MB body, and none of it, on a raw connection; returns the status
// of the answer (0: none within 5 s). httplib's client always sends the body it is given.
int oversized_request_status(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  const std::string request =
      "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 100000000\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    pollfd readable{fd, POLLIN, 0};
    char buffer[512];
    ssize_t n = 0;
    while (reply.size() < 12 && ::poll(&readable, 1, 5000) > 0 && (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0)
      reply.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return reply.starts_with("HTTP/1.1 ") && reply.size() >= 12 ? std::stoi(reply.substr(9, 3)) : 0;
}

double percentile(const std::vector<double>& sorted, double q) {
  return sorted.empty() ? 0.0 : sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) try {
  std::string url, data = "data/mnist";
  int clients = 8, seconds = 60, images = 1000, pid = 0;
  po::options_description options("load_test options");
  options.add_options()("help", "this help")
      ("url", po::value(&url)->required(), "the server, http://127.0.0.1:PORT (loopback only)")
      ("clients", po::value(&clients)->default_value(clients), "client threads, one connection each")
      ("seconds", po::value(&seconds)->default_value(seconds), "how long to load the server")
      ("data", po::value(&data)->default_value(data), "MNIST directory (its test split is used)")
      ("images", po::value(&images)->default_value(images), "test digits to cycle through")
      ("png", "send PNG bodies instead of JSON")
      ("abuse", "also send bad requests (a few per second), each must get its 4xx")
      ("pid", po::value(&pid), "the server's process id, to report its memory");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, options), vm);
  if (vm.count("help")) return std::cout << options, 0;
  po::notify(vm);
  std::smatch match;
  if (!std::regex_match(url, match, std::regex(R"(http://(127\.0\.0\.1|localhost):(\d{1,5})/?)")))
    throw std::invalid_argument("--url must be http://127.0.0.1:PORT (loopback only), got " + url);
  if (clients < 1 || clients > 256 || seconds < 1 || seconds > 3600 || images < 1)
    throw std::invalid_argument("--clients 1..256, --seconds 1..3600, --images >= 1");
  const int port = std::stoi(match[2]);
  const bool png = vm.count("png") > 0, abuse = vm.count("abuse") > 0;
  auto client = [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_keep_alive(true);
    c.set_tcp_nodelay(true);  // as browsers do: a request leaves at once, whole
    c.set_connection_timeout(5);
    c.set_read_timeout(20);
    return c;
  };
  auto report_memory = [&](const char* when) {
    if (pid > 0) std::printf("server memory %-14s %s\n", when, server_memory(pid).c_str());
  };
  report_memory("at start:");

  // Warm-up: each digit once, the server's answer becomes the expected one for the run.
  const nn::MnistSplit split = nn::load_mnist(data, nn::Split::Test);
  images = static_cast<int>(std::min<std::int64_t>(images, split.count));
  std::vector<Body> bodies;
  std::vector<int> expected;
  int agrees_with_label = 0;
  {
    auto c = client();
    for (int i = 0; i < images; ++i) {
      bodies.push_back(digit_body(split, i, png));
      expected.push_back(answered_digit(c.Post("/api/predict", bodies[i].content, bodies[i].content_type)));
      if (expected.back() < 0) throw std::runtime_error("warm-up: no valid answer for test digit " + std::to_string(i));
      agrees_with_label += expected.back() == split.labels[static_cast<std::size_t>(i)];
    }
  }
  std::printf("warm-up: %d %s digits, server agrees with the label on %d\n", images, png ? "PNG" : "JSON",
              agrees_with_label);
  report_memory("after warm-up:");

  // The load: every client until the deadline; latencies are kept per thread, merged at the end.
  const auto start = Clock::now(), deadline = start + std::chrono::seconds(seconds);
  std::vector<std::vector<double>> latency_ms(static_cast<std::size_t>(clients));
  std::atomic<long> errors = 0, mismatches = 0, bad_sent = 0, bad_wrong_status = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      auto c = client();
      for (std::size_t i = static_cast<std::size_t>(t) * 97 % bodies.size(); Clock::now() < deadline;
           i = (i + 1) % bodies.size()) {
        const auto sent = Clock::now();
        const int digit = answered_digit(c.Post("/api/predict", bodies[i].content, bodies[i].content_type));
        latency_ms[static_cast<std::size_t>(t)].push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
        if (digit < 0) ++errors;
        else if (digit != expected[i]) ++mismatches;
      }
    });
  }
  if (abuse) {
    threads.emplace_back([&] {
      auto c = client();
      const std::string garbage_png = "\x89PNG\r\n\x1a\n" + std::string(300, '\x5a');
      for (int n = 0; Clock::now() < deadline; ++n) {
        int status = 0, wanted = 400;
        if (n % 3 == 0) status = oversized_request_status(port), wanted = 413;
        if (n % 3 == 1) if (auto r = c.Post("/api/predict", R"({"width": 28, "pixels": [)", "application/json")) status = r->status;
        if (n % 3 == 2) if (auto r = c.Post("/api/predict", garbage_png, "image/png")) status = r->status;
        ++bad_sent;
        if (status != wanted) ++bad_wrong_status, std::fprintf(stderr, "bad request %d: got %d, wanted %d\n", n, status, wanted);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  while (Clock::now() < deadline) {  // memory every 10 s, to see it stay flat
    std::this_thread::sleep_until(std::min(deadline, Clock::now() + std::chrono::seconds(10)));
    if (pid > 0 && Clock::now() < deadline)
      std::printf("  %5.0f s  %s\n", std::chrono::duration<double>(Clock::now() - start).count(), server_memory(pid).c_str());
  }
  for (std::thread& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> all;
  for (const auto& per_client : latency_ms) all.insert(all.end(), per_client.begin(), per_client.end());
  std::sort(all.begin(), all.end());
  std::printf("%d clients, %.1f s, %s bodies%s\n", clients, elapsed, png ? "PNG" : "JSON", abuse ? ", with abuse" : "");
  std::printf("requests:   %zu (%.0f/s)\n", all.size(), static_cast<double>(all.size()) / elapsed);
  std::printf("latency:    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", percentile(all, 0.5),
              percentile(all, 0.9), percentile(all, 0.99), all.empty() ? 0.0 : all.back());
  std::printf("errors:     %ld\nmismatches: %ld\n", errors.load(), mismatches.load());
  if (abuse) std::printf("bad requests: %ld sent, %ld without their 4xx\n", bad_sent.load(), bad_wrong_status.load());
  report_memory("at end:");
  const bool ok = errors == 0 && mismatches == 0 && bad_wrong_status == 0 && !all.empty();
  std::printf("%s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "load_test: %s\n", e.what());
  return 2;
}
