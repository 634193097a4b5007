// The lenet command end to end: argument errors, training that learns, determinism, checkpoints
// that survive SIGKILL, the NaN guard, eval and graph. The binary's path comes from $LENET.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "autograd/file.hpp"
#include "models/serialize.hpp"

namespace fs = std::filesystem;

namespace {

struct Outcome {
  int status = -1;     // exit status, or 128 + signal
  std::string output;  // stdout and stderr together
};

std::string lenet() {
  const char* path = std::getenv("LENET");
  return path ? path : "build/tools/lenet";
}

// The argument as one shell word, after a space.
std::string shell_word(const std::string& s) {
  std::string out = " '";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

Outcome run(const std::vector<std::string>& args) {
  std::string command = shell_word(lenet());
  for (const auto& a : args) command += shell_word(a);
  command += " 2>&1";
  Outcome result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

int line_count(const std::string& s) {
  int lines = 0;
  for (char c : s) lines += c == '\n';
  return lines;
}

bool have_mnist() { return fs::exists("data/mnist/t10k-labels-idx1-ubyte"); }

// A fresh directory under the system's temporary directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "lenet-cli-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// The small, quick run most tests use: 1,000 images, 2 threads.
std::vector<std::string> small_run(const TempDir& dir, const std::string& name, std::vector<std::string> extra = {},
                                   const std::string& epochs = "2") {
  std::vector<std::string> args{"train", "--data", "data/mnist", "--limit", "1000", "--epochs", epochs,
                                "--batch-size", "50", "--threads", "2", "--log-every", "5",
                                "--out", dir / (name + ".safetensors"), "--metrics", dir / (name + ".csv"),
                                "--plot", ""};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::map<std::string, std::vector<double>> weights_of(const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, tensor] : nn::load_safetensors(path).tensors) out[name] = tensor.to_vector();
  return out;
}

// The loss column of the step rows of a metrics CSV.
std::vector<std::string> losses_of(const std::string& csv_path) {
  std::vector<std::string> out;
  const std::string csv = ag::read_file(csv_path);
  const std::regex step_row(R"(^step,[^,]*,[^,]*,[^,]*,[^,]*,([^,]*),)");
  std::size_t begin = 0;
  while (begin < csv.size()) {
    const std::size_t end = csv.find('\n', begin);
    const std::string line = csv.substr(begin, end - begin);
    std::smatch m;
    if (std::regex_search(line, m, step_row)) out.push_back(m[1]);
    begin = end == std::string::npos ? csv.size() : end + 1;
  }
  return out;
}

}  // namespace

TEST(CommandLine, NoCommandPrintsUsageAndExits2) {
  const Outcome r = run({});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("usage: lenet COMMAND"), std::string::npos) << r.output;
}

TEST(CommandLine, UnknownCommandIsOneLineExit2) {
  const Outcome r = run({"fly"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("unknown command 'fly'"), std::string::npos) << r.output;
}

TEST(CommandLine, BadArgumentsAreOneLineExit2) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"train", "--bogus"}, {"train", "--threads", "0"},
        {"train", "--epochs", "many"}, {"train", "--optimizer", "rmsprop"}, {"train", "--lr", "-1"},
        {"eval", "--errors"}, {"graph"}, {"graph", "-o", "x.gif"}, {"predict"},
        {"bench", "--batch", "100000000000"}, {"bench", "--threads", "0,2"}}) {
    const Outcome r = run(args);
    EXPECT_EQ(r.status, 2) << args[0] << " " << args[1] << ": " << r.output;
    EXPECT_EQ(line_count(r.output), 1) << r.output;
    EXPECT_EQ(r.output.rfind("lenet " + args[0] + ": ", 0), 0u) << r.output;
  }
}

TEST(CommandLine, HelpListsTheOptionsAndExits0) {
  const Outcome r = run({"train", "--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* option : {"--epochs", "--batch-size", "--seed", "--threads", "--checkpoint", "--resume"})
    EXPECT_NE(r.output.find(option), std::string::npos) << option;
}

TEST(Train, MissingDataSaysWhichPathsItTried) {
  TempDir dir;
  const Outcome r = run({"train", "--data", dir / "nowhere"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find(dir / "nowhere/train-images-idx3-ubyte"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train-images.idx3-ubyte.gz"), std::string::npos) << r.output;
}

TEST(Train, AShortRunLearnsToRecogniseDigits) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing (tools/run fetches it)";
  TempDir dir;
  const Outcome r = run({"train", "--data", "data/mnist", "--limit", "5000", "--epochs", "2", "--threads", "2",
                     "--out", dir / "w.safetensors", "--metrics", dir / "m.csv", "--plot", dir / "p.png"});
  ASSERT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(epoch 2/2 done .* test acc ([0-9.]+))"))) << r.output;
  // Chance is 0.10; two epochs over 5,000 images reach about 0.96.
  EXPECT_GE(std::stod(m[1]), 0.94) << r.output;
  EXPECT_NE(r.output.find("seed 1"), std::string::npos) << "the seed is printed at start";
  EXPECT_EQ(weights_of(dir / "w.safetensors").size(), 10u);
  const std::string png = ag::read_file(dir / "p.png");
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

TEST(Train, SameSeedAndThreadsGiveTheSameRunBitForBit) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  ASSERT_EQ(run(small_run(dir, "a")).status, 0);
  ASSERT_EQ(run(small_run(dir, "b")).status, 0);
  ASSERT_EQ(run(small_run(dir, "c", {"--seed", "2"})).status, 0);
  const auto a = losses_of(dir / "a.csv"), b = losses_of(dir / "b.csv"), c = losses_of(dir / "c.csv");
  ASSERT_GE(a.size(), 8u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(weights_of(dir / "a.safetensors"), weights_of(dir / "b.safetensors"));
}

TEST(Train, ResumingAfterSigkillEndsWithTheSameWeights) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  ASSERT_EQ(run(small_run(dir, "whole")).status, 0);

  // The same run with a checkpoint every 7 steps, killed without warning once one exists.
  std::vector<std::string> args = small_run(dir, "cut", {"--checkpoint", dir / "ck", "--checkpoint-every", "7"});
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string binary = lenet();
    std::vector<char*> argv{binary.data()};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::freopen("/dev/null", "w", stdout);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(dir / "ck") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(fs::exists(dir / "ck"));
  if (WIFEXITED(status)) GTEST_SKIP() << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(dir / "cut.safetensors")) << "a killed run writes no weights";

  const Outcome resumed = run({"train", "--data", "data/mnist", "--resume", dir / "ck", "--out", dir / "cut.safetensors",
                           "--metrics", dir / "cut.csv", "--plot", "", "--log-every", "5"});
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming"), std::string::npos);
  EXPECT_EQ(weights_of(dir / "whole.safetensors"), weights_of(dir / "cut.safetensors"));
  EXPECT_EQ(losses_of(dir / "whole.csv"), losses_of(dir / "cut.csv"));
}

TEST(Train, ResumeRefusesContradictingOptions) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  ASSERT_EQ(run(small_run(dir, "a", {"--checkpoint", dir / "ck"})).status, 0);
  const Outcome r = run({"train", "--data", "data/mnist", "--resume", dir / "ck", "--lr", "0.2"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--lr 0.2 contradicts the checkpoint's 0.05"), std::string::npos) << r.output;
}

TEST(Train, SigtermSavesACheckpointAndExits) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  std::vector<std::string> args = small_run(dir, "t", {"--checkpoint", dir / "ck"}, "500");  // far longer than the 2 s before the signal
  std::string command = shell_word(lenet());
  for (const auto& a : args) command += shell_word(a);
  // The shell runs lenet in the background, signals it after a moment, and reports its status.
  const std::string script = command + " >" + shell_word(dir / "log") + " 2>&1 & pid=$!; sleep 2; kill -TERM $pid; wait $pid";
  const int status = std::system(script.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  const std::string log = ag::read_file(dir / "log");
  EXPECT_NE(log.find("stopped by signal 15"), std::string::npos) << log;
  EXPECT_NE(log.find("resume with --resume"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir / "ck"));
  EXPECT_FALSE(fs::exists(dir / "t.safetensors"));
}

TEST(Train, ExplodingLearningRateStopsWithTheStepAndKeepsTheLastCheckpoint) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome r = run(small_run(dir, "boom", {"--lr", "1e6", "--schedule", "constant", "--checkpoint", dir / "ck"}));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"((loss is (nan|inf|-nan))|(gradient of \S+ is not finite) at step \d+)")))
      << r.output;
  EXPECT_FALSE(fs::exists(dir / "boom.safetensors")) << "no weights from a diverged run";
}

TEST(Eval, ShippedWeightsScoreAbove99Percent) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome r = run({"eval", "--weights", "models/lenet5.safetensors", "--errors", dir / "errors.png"});
  ASSERT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(accuracy ([0-9.]+))"))) << r.output;
  EXPECT_GE(std::stod(m[1]), 0.993);
  EXPECT_NE(r.output.find("confusion matrix"), std::string::npos);
  EXPECT_EQ(ag::read_file(dir / "errors.png").substr(1, 3), "PNG");
}

TEST(Eval, WeightsOfAnotherShapeAreRefusedInOneLine) {
  TempDir dir;
  nn::save_safetensors(dir / "other.safetensors", {{"conv1.weight", ag::Tensor({6, 1, 3, 3})}});
  const Outcome r = run({"eval", "--weights", dir / "other.safetensors", "--data", dir.path.string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("other.safetensors"), std::string::npos) << r.output;
}

TEST(Graph, WritesDotAndSvg) {
  TempDir dir;
  ASSERT_EQ(run({"graph", "-o", dir / "g.dot"}).status, 0);
  const std::string dot = ag::read_file(dir / "g.dot");
  EXPECT_EQ(dot.rfind("digraph", 0), 0u);
  EXPECT_NE(dot.find("conv1.weight"), std::string::npos);
  EXPECT_NE(dot.find("[1, 10]"), std::string::npos);
  EXPECT_NE(dot.find("conv2d+relu+max_pool2d"), std::string::npos) << "fused by default";
  ASSERT_EQ(run({"graph", "--no-fusion", "-o", dir / "unfused.dot"}).status, 0);
  const std::string unfused = ag::read_file(dir / "unfused.dot");
  EXPECT_EQ(unfused.find("conv2d+relu"), std::string::npos);
  EXPECT_NE(unfused.find("max_pool2d\\n[1, 6, 14, 14]"), std::string::npos) << unfused;
  ASSERT_EQ(run({"graph", "--loss", "--backward", "-o", dir / "g.svg"}).status, 0);
  EXPECT_NE(ag::read_file(dir / "g.svg").find("<svg"), std::string::npos);
}
