// The web server through real HTTP clients: the API's answers against the same pipeline run
// in-process, the model's ONNX export and onnxruntime-web's files, every refusal with its status
// (the server staying up), many clients at once, the log, and `lenet serve`'s command-line errors. The server runs in-process on 127.0.0.1, a free port.
//
// Weights: $LENET_WEIGHTS or models/lenet5.safetensors (every test is skipped if it is missing).
// MNIST test digits: data/mnist (the tests that need them are skipped if it is missing).
// The lenet binary, for the command-line tests: $LENET.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "autograd/file.hpp"
#include "models/data/digit_image.hpp"
#include "models/export/onnx.hpp"
#include "models/lenet5.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/weights.hpp"
#include "ops/ops.hpp"
#include "tools/server.hpp"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string weights_path() {
  const char* path = std::getenv("LENET_WEIGHTS");
  return path && *path ? path : "models/lenet5.safetensors";
}

// ---------------------------------------------------------------------------------------------
// Images and what the server should answer for them, computed in-process by the same pipeline.

// An MNIST digit as a page would draw it: dark ink on white paper, enlarged `scale` times.
nn::GrayImage mnist_image(const nn::MnistSplit& split, std::int64_t index, int scale = 1) {
  nn::GrayImage image{.width = 28 * scale, .height = 28 * scale, .pixels = {}};
  for (std::int64_t r = 0; r < image.height; ++r)
    for (std::int64_t c = 0; c < image.width; ++c)
      image.pixels.push_back(
          255.0F - split.images[static_cast<std::size_t>(index * 784 + (r / scale) * 28 + c / scale)]);
  return image;
}

// A "1" as a person draws it on the page's 280 x 280 canvas: a thick, slightly slanted stroke.
nn::GrayImage drawn_one(int shift = 0) {
  nn::GrayImage image{.width = 280, .height = 280, .pixels = std::vector<float>(280 * 280, 255.0F)};
  for (std::int64_t r = 50; r < 230; ++r) {
    const std::int64_t centre = 140 + shift + (230 - r) / 12;
    for (std::int64_t c = centre - 10; c <= centre + 10; ++c) image.pixels[static_cast<std::size_t>(r * 280 + c)] = 0.0F;
  }
  return image;
}

std::string json_body(const nn::GrayImage& image) {
  json pixels = json::array();
  for (const float p : image.pixels) pixels.push_back(static_cast<int>(p));
  return json{{"width", image.width}, {"height", image.height}, {"pixels", pixels}}.dump();
}

// The model loaded in-process: the reference answers.
struct Reference {
  ag::Generator gen{0};
  nn::LeNet5 model{gen};
  nn::Metadata metadata;
  nn::Normalization normalization;

  Reference() {
    metadata = nn::load_weights(model, weights_path());
    normalization = nn::normalization_from(metadata);
    model.eval();
  }
  nn::Prediction classify(const nn::GrayImage& image) const {
    return nn::classify(model, nn::to_input_tensor(nn::preprocess_digit(image), normalization)).front();
  }
};

// ---------------------------------------------------------------------------------------------
// Raw HTTP, for what a well-behaved client never sends.

struct RawReply {
  int status = 0;       // 0: no response
  std::string text;     // everything received
  double seconds = 0;   // until the response was complete (or the wait ended)
};

// Sends `request` on a new connection and reads until a whole response has arrived, the server
// closes, or `wait` passes. The body announced by the request need not follow.
RawReply raw_exchange(int port, const std::string& request, std::chrono::milliseconds wait = std::chrono::seconds(4)) {
  RawReply reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return reply;
  }
  const auto start = Clock::now();
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return reply;
  }
  const auto complete = [&] {
    const auto end_of_headers = reply.text.find("\r\n\r\n");
    if (end_of_headers == std::string::npos) return false;
    std::smatch length;
    const std::string headers = reply.text.substr(0, end_of_headers);
    if (!std::regex_search(headers, length, std::regex("Content-Length: (\\d+)", std::regex::icase))) return true;
    return reply.text.size() >= end_of_headers + 4 + std::stoul(length[1]);
  };
  while (!complete()) {
    const auto left = wait - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (left.count() <= 0) break;
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, static_cast<int>(left.count())) <= 0) break;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    reply.text.append(buffer, static_cast<std::size_t>(n));
  }
  reply.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  std::smatch status;
  if (std::regex_search(reply.text, status, std::regex("^HTTP/1\\.1 (\\d{3}) "))) reply.status = std::stoi(status[1]);
  return reply;
}

json body_json(const std::string& text) {
  const auto start = text.find("\r\n\r\n");
  return json::parse(start == std::string::npos ? text : text.substr(start + 4), nullptr, false);
}

// ---------------------------------------------------------------------------------------------
// One server for the whole suite.

class Server : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(weights_path())) return;
    reference_ = new Reference();
    web::ServerOptions options;
    options.weights = weights_path();
    server_ = new web::DigitServer(options, [](const std::string& line) {
      std::lock_guard lock(log_mutex_);
      log_.push_back(line);
    });
    port_ = server_->bind("127.0.0.1", 0);
    listener_ = new std::thread([] { server_->listen(); });
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    try {
      mnist_ = new nn::MnistSplit(nn::load_mnist("data/mnist", nn::Split::Test));
    } catch (const nn::DataError&) {
      mnist_ = nullptr;
    }
  }

  static void TearDownTestSuite() {
    if (!server_) return;
    server_->stop();
    listener_->join();
    delete listener_;
    delete server_;
    delete reference_;
    delete mnist_;
    server_ = nullptr;
  }

  void SetUp() override {
    if (!server_) GTEST_SKIP() << "no weights at " << weights_path() << " (set LENET_WEIGHTS)";
  }

  static httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(5);
    c.set_read_timeout(20);
    return c;
  }

  // The server answers /healthz: called after every refusal.
  static bool healthy() {
    const auto response = client().Get("/healthz");
    return response && response->status == 200 && json::parse(response->body)["status"] == "ok";
  }

  static std::vector<std::string> log_lines() {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

  static inline web::DigitServer* server_ = nullptr;
  static inline std::thread* listener_ = nullptr;
  static inline Reference* reference_ = nullptr;
  static inline nn::MnistSplit* mnist_ = nullptr;
  static inline int port_ = 0;
  static inline std::mutex log_mutex_;
  static inline std::vector<std::string> log_;
};

constexpr const char* kNoMnist = "no MNIST test set in data/mnist (tools/run test fetches it)";

// ---------------------------------------------------------------------------------------------

TEST_F(Server, HealthzAnswersOk) { EXPECT_TRUE(healthy()); }

TEST_F(Server, PageIsServedFromMemoryWithItsContentTypes) {
  auto c = client();
  const auto index = c.Get("/"), index_by_name = c.Get("/index.html"), script = c.Get("/app.js"),
             style = c.Get("/style.css");
  ASSERT_TRUE(index && index_by_name && script && style);
  EXPECT_EQ(index->status, 200);
  EXPECT_EQ(index->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(index->body.find("<canvas"), std::string::npos);
  EXPECT_EQ(index->body, index_by_name->body);
  EXPECT_EQ(script->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(style->get_header_value("Content-Type"), "text/css; charset=utf-8");
  EXPECT_FALSE(script->body.empty());
  EXPECT_FALSE(style->body.empty());
  EXPECT_EQ(index->get_header_value("X-Content-Type-Options"), "nosniff");
}

TEST_F(Server, PathsOutsideTheEmbeddedFilesAreNotFound) {
  for (const char* path : {"/server.cpp", "/tools/web/index.html", "/../tools/server.cpp",
                           "/%2e%2e/meson.build", "/web/app.js", "/index.html/", "/.git/HEAD"}) {
    const RawReply reply = raw_exchange(port_, std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.status, 404) << path;
    EXPECT_TRUE(body_json(reply.text).contains("error")) << path;
  }
}

TEST_F(Server, TestSetDigitsArePredictedAsLabelled) {
  if (!mnist_) GTEST_SKIP() << kNoMnist;
  auto c = client();
  constexpr int kDigits = 300;
  int correct = 0;
  for (int i = 0; i < kDigits; ++i) {
    const nn::GrayImage image = mnist_image(*mnist_, i);
    const auto response = c.Post("/api/predict", json_body(image), "application/json");
    ASSERT_TRUE(response) << "digit " << i;
    ASSERT_EQ(response->status, 200) << response->body;
    const json answer = json::parse(response->body);
    correct += answer["digit"] == mnist_->labels[static_cast<std::size_t>(i)];
    // The same pipeline as in-process, number for number.
    const nn::Prediction expected = reference_->classify(image);
    ASSERT_EQ(answer["digit"], expected.digit) << "digit " << i;
    for (std::size_t k = 0; k < 10; ++k) EXPECT_NEAR(answer["probabilities"][k].get<double>(), expected.probabilities[k], 1e-9);
    const nn::Digit seen = nn::preprocess_digit(image);
    ASSERT_EQ(answer["input28"].size(), 784U);
    for (std::size_t p = 0; p < 784; ++p) ASSERT_NEAR(answer["input28"][p].get<double>(), seen[p], 5e-4) << "pixel " << p;
    EXPECT_GE(answer["latency_us"].get<std::int64_t>(), 0);
  }
  EXPECT_GE(correct, kDigits * 97 / 100) << correct << " of " << kDigits << " test digits predicted as labelled";
}

TEST_F(Server, PngBodyIsReadLikeJson) {
  if (!mnist_) GTEST_SKIP() << kNoMnist;
  auto c = client();
  for (int i = 0; i < 20; ++i) {
    const nn::GrayImage image = mnist_image(*mnist_, i, /*scale=*/5);  // 140 x 140, like a canvas
    const auto from_json = c.Post("/api/predict", json_body(image), "application/json");
    const auto from_png = c.Post("/api/predict", nn::encode_png(image), "image/png");
    ASSERT_TRUE(from_json && from_png);
    ASSERT_EQ(from_png->status, 200) << from_png->body;
    const json a = json::parse(from_json->body), b = json::parse(from_png->body);
    EXPECT_EQ(a["digit"], b["digit"]);
    EXPECT_EQ(a["input28"], b["input28"]);
    EXPECT_EQ(b["digit"], mnist_->labels[static_cast<std::size_t>(i)]) << "digit " << i;
  }
}

TEST_F(Server, DrawnStrokeOfAOneIsPredictedAsOne) {
  auto c = client();
  const auto response = c.Post("/api/predict", nn::encode_png(drawn_one()), "image/png; charset=binary");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  EXPECT_EQ(json::parse(response->body)["digit"], 1);
}

TEST_F(Server, FeaturesAreTheConvolutionsAfterReluBeforePooling) {
  const nn::GrayImage image = mnist_ ? mnist_image(*mnist_, 0) : drawn_one();
  const auto response = client().Post("/api/features", json_body(image), "application/json");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  const json answer = json::parse(response->body);

  ag::NoGradGuard no_grad;
  const ag::Variable x(nn::to_input_tensor(nn::preprocess_digit(image), reference_->normalization));
  const ag::Variable conv1 = ag::relu(reference_->model.conv1(x));
  const ag::Variable conv2 = ag::relu(reference_->model.conv2(ag::max_pool2d(conv1, 2)));
  ASSERT_EQ(answer["layers"].size(), 2u) << answer.dump().substr(0, 200);
  std::size_t index = 0;
  for (const auto& [name, expected] : {std::pair{"conv1", conv1.value()}, std::pair{"conv2", conv2.value()}}) {
    const json& layer = answer["layers"][index++];
    EXPECT_EQ(layer["name"], name);
    EXPECT_EQ(layer["activation"], "relu");
    ASSERT_EQ(layer["channels"], expected.size(1)) << name;
    ASSERT_EQ(layer["height"], expected.size(2)) << name;
    ASSERT_EQ(layer["width"], expected.size(3)) << name;
    const std::int64_t area = expected.size(2) * expected.size(3);
    double largest = 0;
    for (std::int64_t c = 0; c < expected.size(1); ++c) {
      ASSERT_EQ(layer["maps"][static_cast<std::size_t>(c)].size(), static_cast<std::size_t>(area));
      for (std::int64_t i = 0; i < area; ++i) {
        const double value = layer["maps"][static_cast<std::size_t>(c)][static_cast<std::size_t>(i)];
        ASSERT_NEAR(value, expected.at(c * area + i), 1e-4) << name << " map " << c << " element " << i;
        ASSERT_GE(value, 0.0) << name;  // after relu
        largest = std::max(largest, value);
      }
    }
    EXPECT_GT(largest, 0.0) << name << " is all zeros";
  }
  EXPECT_EQ(answer["layers"][0]["channels"], 6);
  EXPECT_EQ(answer["layers"][1]["height"], 10);
}

TEST_F(Server, ModelDescribesLayersParametersAndRecordedAccuracy) {
  const auto response = client().Get("/api/model");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200);
  const json model = json::parse(response->body);
  std::vector<std::string> layer_names;
  std::int64_t total = 0;
  std::size_t parameter_index = 0;
  const nn::NamedParameters parameters = reference_->model.named_parameters();
  for (const json& layer : model["layers"]) {
    layer_names.push_back(layer["name"]);
    std::int64_t layer_total = 0;
    for (const json& parameter : layer["parameters"]) {
      ASSERT_LT(parameter_index, parameters.size());
      const auto& [name, variable] = parameters[parameter_index++];
      EXPECT_EQ(parameter["name"], name);
      EXPECT_EQ(parameter["shape"].get<ag::Shape>(), variable.shape()) << name;
      EXPECT_EQ(parameter["count"], variable.value().numel()) << name;
      layer_total += parameter["count"].get<std::int64_t>();
    }
    EXPECT_EQ(layer["parameter_count"], layer_total);
    total += layer_total;
  }
  EXPECT_EQ(parameter_index, parameters.size());
  EXPECT_EQ(layer_names, (std::vector<std::string>{"conv1", "conv2", "fc1", "fc2", "fc3"}));
  EXPECT_EQ(model["parameter_count"], 61706);
  EXPECT_EQ(total, 61706);
  const auto recorded = reference_->metadata.find("test_accuracy");
  if (recorded == reference_->metadata.end())
    EXPECT_TRUE(model["test_accuracy"].is_null());
  else
    EXPECT_DOUBLE_EQ(model["test_accuracy"].get<double>(), std::stod(recorded->second));
}

TEST_F(Server, GraphIsAnSvgOfTheNetwork) {
  const auto response = client().Get("/api/graph.svg");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "image/svg+xml");
  EXPECT_NE(response->body.find("<svg"), std::string::npos);
  EXPECT_NE(response->body.find("conv1.weight"), std::string::npos);
  EXPECT_NE(response->body.find("fc3.bias"), std::string::npos);
}

// Each bad body: its status, a JSON {"error": "..."} naming the problem, and the server still up.
TEST_F(Server, EveryBadBodyGetsItsStatusAndAJsonError) {
  const std::string png = nn::encode_png(drawn_one());
  std::string deep(200000, '[');
  deep += std::string(200000, ']');
  const std::string blank = json_body(nn::GrayImage{.width = 28, .height = 28, .pixels = std::vector<float>(784, 255.0F)});
  auto pixels_of = [](const std::string& values, int count = 4) {
    return "{\"width\": 2, \"height\": " + std::to_string(count / 2) + ", \"pixels\": [" + values + "]}";
  };
  struct Case {
    std::string what, content_type, body;
    int status;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"malformed JSON", "application/json", "{\"width\": 2,", 400, "not valid JSON"},
      {"empty JSON body", "application/json", "", 400, "not valid JSON"},
      {"JSON array", "application/json", "[1, 2]", 400, "expected a JSON object"},
      {"NaN literal", "application/json", pixels_of("NaN, 0, 0, 0"), 400, "not valid JSON"},
      {"number too large for a double", "application/json", pixels_of("1e400, 0, 0, 0"), 400, "not valid JSON"},
      {"missing width", "application/json", "{\"height\": 1, \"pixels\": [0]}", 400, "missing \"width\""},
      {"width a string", "application/json", "{\"width\": \"2\", \"height\": 1, \"pixels\": [0, 0]}", 400, "\"width\" must be"},
      {"width zero", "application/json", "{\"width\": 0, \"height\": 1, \"pixels\": []}", 400, "\"width\" must be"},
      {"width negative", "application/json", "{\"width\": -2, \"height\": 1, \"pixels\": [0, 0]}", 400, "\"width\" must be"},
      {"width fractional", "application/json", "{\"width\": 2.5, \"height\": 1, \"pixels\": [0, 0]}", 400, "\"width\" must be"},
      {"huge width and height", "application/json", "{\"width\": 1e9, \"height\": 1e9, \"pixels\": [0]}", 400, "\"width\" must be"},
      {"huge height", "application/json", "{\"width\": 1, \"height\": 4294967297, \"pixels\": [0]}", 400, "\"height\" must be"},
      {"pixels missing", "application/json", "{\"width\": 1, \"height\": 1}", 400, "\"pixels\" must be"},
      {"pixels an object", "application/json", "{\"width\": 1, \"height\": 1, \"pixels\": {\"0\": 1}}", 400, "\"pixels\" must be"},
      {"too few pixels", "application/json", pixels_of("0, 0, 0", 4), 400, "has 3 values"},
      {"too many pixels", "application/json", pixels_of("0, 0, 0, 0, 0", 4), 400, "has 5 values"},
      {"pixel a string", "application/json", pixels_of("0, \"255\", 0, 0"), 400, "pixels[1] must be"},
      {"pixel null", "application/json", pixels_of("0, 0, null, 0"), 400, "pixels[2] must be"},
      {"pixel true", "application/json", pixels_of("true, 0, 0, 0"), 400, "pixels[0] must be"},
      {"pixel nested array", "application/json", pixels_of("0, 0, 0, [1]"), 400, "pixels[3] must be"},
      {"pixel negative", "application/json", pixels_of("0, -1, 0, 0"), 400, "pixels[1] must be"},
      {"pixel above 255", "application/json", pixels_of("0, 0, 255.5, 0"), 400, "pixels[2] must be"},
      {"deeply nested arrays", "application/json", deep, 400, "expected a JSON object"},
      {"blank image", "application/json", blank, 400, "no ink"},
      {"not a PNG", "image/png", "GIF89a not a png at all", 400, "PNG body"},
      {"truncated PNG", "image/png", png.substr(0, png.size() / 2), 400, "PNG body"},
      {"empty PNG body", "image/png", "", 400, "PNG body"},
      {"PNG claiming 100000 x 100000", "image/png",
       png.substr(0, 16) + std::string("\x00\x01\x86\xa0\x00\x01\x86\xa0", 8) + png.substr(24), 400, "larger than"},
      {"text body", "text/plain", "7", 415, "Content-Type must be"},
      {"form body", "application/x-www-form-urlencoded", "width=1", 415, "Content-Type must be"},
      {"no content type", "", "{}", 415, "Content-Type must be"},
  };
  auto c = client();
  for (const Case& bad : cases) {
    for (const char* path : {"/api/predict", "/api/features"}) {
      const auto response = c.Post(path, bad.body, bad.content_type);
      ASSERT_TRUE(response) << bad.what << ": no response";
      EXPECT_EQ(response->status, bad.status) << bad.what << " " << path << ": " << response->body;
      EXPECT_EQ(response->get_header_value("Content-Type"), "application/json") << bad.what;
      const json error = json::parse(response->body, nullptr, false);
      ASSERT_TRUE(error.is_object() && error.contains("error")) << bad.what << ": " << response->body;
      EXPECT_NE(error["error"].get<std::string>().find(bad.message_part), std::string::npos)
          << bad.what << ": " << error["error"];
    }
    ASSERT_TRUE(healthy()) << "after " << bad.what;
  }
}

TEST_F(Server, WrongMethodsAndUnknownPathsGetJsonErrors) {
  auto c = client();
  const auto get_predict = c.Get("/api/predict");
  ASSERT_TRUE(get_predict);
  EXPECT_EQ(get_predict->status, 405);
  EXPECT_EQ(get_predict->get_header_value("Allow"), "POST");
  const auto unknown = c.Get("/api/nothing/here");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(json::parse(unknown->body)["error"], "not found");
  const auto put = c.Put("/api/predict", "{}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 404);
  EXPECT_TRUE(json::parse(put->body).contains("error"));
  EXPECT_TRUE(healthy());
}

TEST_F(Server, OversizedBodyIsRefusedBeforeItIsSent) {
  // Headers only: a server that waited for the 2 MB body would answer only at its read timeout (5 s).
  const RawReply reply = raw_exchange(port_,
      "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_EQ(reply.status, 413) << reply.text;
  EXPECT_LT(reply.seconds, 2.0);
  EXPECT_NE(body_json(reply.text)["error"].get<std::string>().find("1048576 bytes"), std::string::npos);
  // With the body sent too, the client reads the 413, or finds the connection reset if the reply
  // and the close that follows overtake its writing; either way the server stays up.
  const auto sent = client().Post("/api/predict", std::string(1'500'000, ' '), "application/json");
  if (sent) {
    EXPECT_EQ(sent->status, 413);
  }
  EXPECT_TRUE(healthy());
}

TEST_F(Server, BodiesOfUnknownOrUnboundedSizeAreRefused) {
  const std::string post = "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  struct Case {
    std::string what, headers;
    int status;
  };
  const std::vector<Case> cases = {
      {"chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n", 411},
      {"no Content-Length", "\r\n", 411},
      {"gzip-compressed", "Content-Encoding: gzip\r\nContent-Length: 20\r\n\r\n", 415},
      {"two Content-Lengths", "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
      {"Content-Length not a number", "Content-Length: 12abc\r\n\r\n", 400},
      {"Content-Length beyond 64 bits", "Content-Length: 99999999999999999999999\r\n\r\n", 400},
      {"100-continue for a large body", "Expect: 100-continue\r\nContent-Length: 5000000\r\n\r\n", 413},
  };
  for (const Case& bad : cases) {
    const RawReply reply = raw_exchange(port_, post + bad.headers);
    EXPECT_EQ(reply.status, bad.status) << bad.what << ":\n" << reply.text;
    EXPECT_LT(reply.seconds, 2.0) << bad.what;
    EXPECT_TRUE(body_json(reply.text).contains("error")) << bad.what << ":\n" << reply.text;
    ASSERT_TRUE(healthy()) << "after " << bad.what;
  }
}

TEST_F(Server, IdleAndGarbageConnectionsDoNotStopOthers) {
  // Fewer idle connections than workers (4): the rest still serve. Plus a request line of garbage.
  std::vector<std::thread> idlers;
  for (int i = 0; i < 2; ++i)
    idlers.emplace_back([] { raw_exchange(port_, "GET /healthz HTTP/1.1\r\nHost: x\r\n", std::chrono::milliseconds(1500)); });
  const RawReply garbage = raw_exchange(port_, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15));
  EXPECT_EQ(garbage.status, 400);
  const auto start = Clock::now();
  EXPECT_TRUE(healthy());
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 1.0);
  for (std::thread& t : idlers) t.join();
}

TEST_F(Server, EightClientsOfTwoHundredRequestsAllGetCorrectAnswers) {
  constexpr int kClients = 8, kRequests = 200;
  // Requests cycle through 50 images (test digits, or drawn ones without MNIST), each answer
  // checked against the in-process pipeline.
  std::vector<std::string> bodies;
  std::vector<int> expected;
  for (int i = 0; i < 50; ++i) {
    const nn::GrayImage image = mnist_ ? mnist_image(*mnist_, i) : drawn_one(i - 25);
    bodies.push_back(json_body(image));
    expected.push_back(reference_->classify(image).digit);
  }
  std::vector<std::vector<double>> round_trip_us(kClients), server_us(kClients);
  std::vector<int> wrong(kClients, 0), failed(kClients, 0);
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      auto c = client();  // one keep-alive connection per client
      for (int r = 0; r < kRequests; ++r) {
        const std::size_t i = static_cast<std::size_t>((t * 7 + r) % 50);
        const auto sent = Clock::now();
        const auto response = c.Post("/api/predict", bodies[i], "application/json");
        round_trip_us[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent).count());
        if (!response || response->status != 200) {
          ++failed[t];
          continue;
        }
        const json answer = json::parse(response->body);
        wrong[t] += answer["digit"] != expected[i];
        server_us[t].push_back(answer["latency_us"].get<double>());
      }
    });
  }
  for (std::thread& c : clients) c.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (int t = 0; t < kClients; ++t) {
    EXPECT_EQ(failed[t], 0) << "client " << t;
    EXPECT_EQ(wrong[t], 0) << "client " << t;
  }
  auto percentile = [](std::vector<std::vector<double>> per_client, double q) {
    std::vector<double> all;
    for (const auto& v : per_client) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    return all.empty() ? 0.0 : all[static_cast<std::size_t>(q * static_cast<double>(all.size() - 1))];
  };
  const double p50 = percentile(round_trip_us, 0.50), p99 = percentile(round_trip_us, 0.99);
  std::cout << std::fixed << std::setprecision(2) << "[ latency  ] " << kClients << " clients x " << kRequests << " POST /api/predict (28x28 JSON), "
            << std::thread::hardware_concurrency() << " cores: round trip p50 " << p50 / 1000 << " ms, p99 "
            << p99 / 1000 << " ms; server compute p50 " << percentile(server_us, 0.5) / 1000 << " ms, p99 "
            << percentile(server_us, 0.99) / 1000 << " ms; " << kClients * kRequests / seconds
            << " requests/s\n";
  RecordProperty("p50_round_trip_us", static_cast<int>(p50));
  RecordProperty("p99_round_trip_us", static_cast<int>(p99));
  EXPECT_TRUE(healthy());
}

TEST_F(Server, LogsOneLinePerRequestWithMethodPathStatusAndMicroseconds) {
  // A log line follows its response, so the previous test's last lines may still be arriving:
  // count only once the log has been still for 100 ms.
  std::size_t before = log_lines().size();
  for (const auto settle = Clock::now() + std::chrono::seconds(2); Clock::now() < settle;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::size_t now = log_lines().size();
    if (now == before) break;
    before = now;
  }
  // Each request is answered on its own connection by whichever worker is free, and a line is
  // logged after its response is sent, so lines of different requests are ordered only if each
  // request waits for the previous one's line.
  const auto wait_for_lines = [](std::size_t count) {
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    while (log_lines().size() < count && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  ASSERT_TRUE(healthy());
  wait_for_lines(before + 1);
  raw_exchange(port_, "POST /api/features HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n");
  wait_for_lines(before + 2);
  raw_exchange(port_, "GET /a%01%7f%0a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  wait_for_lines(before + 3);
  const std::vector<std::string> lines = log_lines();
  ASSERT_EQ(lines.size(), before + 3);
  EXPECT_TRUE(std::regex_match(lines[before], std::regex(R"(GET /healthz 200 \d+us)"))) << lines[before];
  EXPECT_TRUE(std::regex_match(lines[before + 1], std::regex(R"(POST /api/features 413 \d+us)"))) << lines[before + 1];
  EXPECT_TRUE(std::regex_match(lines[before + 2], std::regex(R"(GET /a\?\?\? 404 \d+us)"))) << lines[before + 2];
  // Control characters from the request never reach the log.
  for (const std::string& line : lines)
    EXPECT_TRUE(std::ranges::all_of(line, [](char ch) { return ch >= 0x20 && ch < 0x7f; })) << line;
}

TEST_F(Server, ModelOnnxIsTheModelsExport) {
  const auto response = client().Get("/model.onnx");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200);
  EXPECT_EQ(response->get_header_value("Content-Type"), "application/octet-stream");
  const std::string expected = nn::export_onnx(
      reference_->model,
      {.model_name = "lenet5", .metadata = nn::onnx_metadata_of_weights(reference_->metadata, weights_path())});
  EXPECT_EQ(response->body, expected) << "the bytes lenet export writes for the same weights";
}

// onnxruntime-web's files, from the directory given (here three files of known bytes), by name
// only; the suite's server, given none, serves none and tells the page so.
TEST_F(Server, OnnxRuntimeWebIsServedFromItsDirectoryWhenGiven) {
  auto c = client();
  EXPECT_EQ(c.Get("/onnxruntime/ort.wasm.min.mjs")->status, 404);
  EXPECT_EQ(json::parse(c.Get("/api/model")->body)["onnx_in_browser"], false);
  EXPECT_NE(c.Get("/")->get_header_value("Content-Security-Policy").find("script-src 'self' 'wasm-unsafe-eval'"),
            std::string::npos);

  const std::filesystem::path directory = std::filesystem::temp_directory_path() / "lenet-server-test-runtime";
  std::filesystem::create_directories(directory);
  for (const char* name : {"ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"})
    ag::write_file_atomically((directory / name).string(), std::string("bytes of ") + name);
  web::ServerOptions options;
  options.weights = weights_path();
  options.onnxruntime_web = directory.string();
  web::DigitServer with_runtime(options, nullptr);
  const int port = with_runtime.bind("127.0.0.1", 0);
  std::thread listener([&] { with_runtime.listen(); });
  while (!with_runtime.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  httplib::Client other("127.0.0.1", port);
  const auto module = other.Get("/onnxruntime/ort.wasm.min.mjs"), wasm = other.Get("/onnxruntime/ort-wasm-simd-threaded.wasm");
  ASSERT_TRUE(module && wasm);
  EXPECT_EQ(module->body, "bytes of ort.wasm.min.mjs");
  EXPECT_EQ(module->get_header_value("Content-Type"), "text/javascript");
  EXPECT_EQ(wasm->body, "bytes of ort-wasm-simd-threaded.wasm");
  EXPECT_EQ(wasm->get_header_value("Content-Type"), "application/wasm");
  EXPECT_EQ(json::parse(other.Get("/api/model")->body)["onnx_in_browser"], true);
  for (const char* path : {"/onnxruntime/ort.min.mjs", "/onnxruntime/", "/onnxruntime/../server.cpp"})
    EXPECT_EQ(raw_exchange(port, std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, 404)
        << path;
  with_runtime.stop();
  listener.join();

  std::filesystem::remove(directory / "ort-wasm-simd-threaded.wasm");
  try {
    web::DigitServer incomplete(options, nullptr);
    FAIL() << "started without one of onnxruntime-web's files";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((directory / "ort-wasm-simd-threaded.wasm").string()), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(directory);
}

TEST_F(Server, SecondServerOnTheSamePortFailsWithOneLine) {
  web::ServerOptions options;
  options.weights = weights_path();
  web::DigitServer second(options, nullptr);
  try {
    second.bind("127.0.0.1", port_);
    FAIL() << "bound a port that is in use";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("cannot listen on 127.0.0.1:" + std::to_string(port_)), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// `lenet serve` on the command line.

struct Outcome {
  int status = -1;
  std::string output;  // stdout and stderr
};

Outcome run_lenet(const std::string& arguments) {
  const char* lenet = std::getenv("LENET");
  Outcome outcome;
  FILE* pipe = ::popen((std::string(lenet) + " " + arguments + " 2>&1").c_str(), "r");
  if (!pipe) return outcome;
  char buffer[4096];
  while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) outcome.output.append(buffer, n);
  const int status = ::pclose(pipe);
  outcome.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

TEST_F(Server, CommandLineErrorsExitWithOneLine) {
  if (!std::getenv("LENET")) GTEST_SKIP() << "set LENET to the lenet binary";
  const std::string weights = "--weights '" + weights_path() + "' ";
  struct Case {
    std::string arguments;
    int status;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"serve " + weights + "--port 70000", 2, "--port must be from 0 to 65535"},
      {"serve " + weights + "--port -1", 2, "--port"},
      {"serve " + weights + "--port eighty", 2, "invalid"},
      {"serve " + weights + "--threads 0", 2, "--threads must be from 1 to 64"},
      {"serve " + weights + "--threads 1000", 2, "--threads must be"},
      {"serve " + weights + "--bogus", 2, "unrecognised"},
      {"serve " + weights + "--port " + std::to_string(port_), 1, "cannot listen on 127.0.0.1:" + std::to_string(port_)},
      {"serve " + weights + "--host 203.0.113.1 --port 0", 1, "cannot listen on 203.0.113.1"},
      {"serve --weights /nonexistent/lenet5.safetensors --port 0", 1, "/nonexistent/lenet5.safetensors"},
      {"serve " + weights + "--onnxruntime-web /nonexistent/dist --port 0", 1, "/nonexistent/dist/ort.wasm.min.mjs"},
  };
  for (const Case& c : cases) {
    const Outcome outcome = run_lenet(c.arguments);
    EXPECT_EQ(outcome.status, c.status) << c.arguments << "\n" << outcome.output;
    EXPECT_NE(outcome.output.find(c.message_part), std::string::npos) << c.arguments << "\n" << outcome.output;
    EXPECT_EQ(std::count(outcome.output.begin(), outcome.output.end(), '\n'), 1) << c.arguments << "\n" << outcome.output;
  }
}

}  // namespace
