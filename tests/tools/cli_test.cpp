// The lenet command end to end: argument errors, training that learns, determinism, checkpoints
// that survive SIGKILL, the NaN guard, learning-rate warm-up, eval and its log-probabilities, graph,
// export, default paths found from another directory, every verb with --model, gradcheck, and a
// model added by a program of its own. The binaries' paths come from $LENET, $BROKEN_MODEL and $SMALL_CNN.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "autograd/file.hpp"
#include "models/data/digit_image.hpp"
#include "models/data/mnist.hpp"
#include "models/nn/safetensors.hpp"
#include "models/registry.hpp"

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

// The lenet command with the wrong_tanh model registered (tests/tools/broken_model.cpp).
std::string broken_model() {
  const char* path = std::getenv("BROKEN_MODEL");
  return path ? path : "build/tests/broken_model";
}

// The lenet command with small_cnn registered (docs/examples/small_cnn.cpp).
std::string small_cnn() {
  const char* path = std::getenv("SMALL_CNN");
  return path ? path : "build/docs/examples/small_cnn";
}

// The argument as one shell word, after a space.
std::string shell_word(const std::string& s) {
  std::string out = " '";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs lenet with `args` in `directory` (the current one if empty); `binary` replaces $LENET.
Outcome run_in(const std::string& directory, const std::vector<std::string>& args,
               const std::string& binary = lenet()) {
  std::string command = directory.empty() ? "" : "cd" + shell_word(directory) + " &&";
  command += shell_word(fs::absolute(binary).string());
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

Outcome run(const std::vector<std::string>& args) { return run_in("", args); }

// Runs another binary built on cli::run (broken_model(), small_cnn()).
Outcome run_binary(const std::string& binary, const std::vector<std::string>& args) {
  return run_in("", args, binary);
}

int line_count(const std::string& s) {
  int lines = 0;
  for (char c : s) lines += c == '\n';
  return lines;
}

bool have_mnist() { return fs::exists("data/mnist/t10k-labels-idx1-ubyte"); }

// The number after `label` in output such as "accuracy 0.9849 (9849 correct)", or -1.
double number_after(const std::string& output, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(output, m, std::regex(label + " ([0-9.]+)"))) return -1;
  return std::stod(m[1]);
}

// Whether `output` has a line of `lenet gradcheck`'s table for `tensor` that ends in "ok".
bool gradcheck_line_ok(const std::string& output, const std::string& tensor) {
  std::string escaped;
  for (char c : tensor) escaped += c == '.' ? std::string("\\.") : std::string(1, c);
  const std::regex line("(^|\\n)" + escaped + " +[0-9]+ +\\S+ +\\S+  ok(\\n|$)");
  return std::regex_search(output, line);
}

// The input tensor and every parameter of a registered model, as gradcheck names them.
std::vector<std::string> checked_tensors(const std::string& model) {
  ag::Generator gen(0);
  std::vector<std::string> names{"input"};
  for (const auto& [name, p] : nn::find_model(model).make(gen)->named_parameters()) names.push_back(name);
  return names;
}

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

// One column (0 = kind) of the step rows of a metrics CSV.
std::vector<std::string> step_column(const std::string& csv_path, int column) {
  std::vector<std::string> out;
  const std::string csv = ag::read_file(csv_path);
  const std::regex step_row("^step(?:,[^,]*){" + std::to_string(column - 1) + "},([^,]*)");
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

// The loss column (mean loss since the previous row) and the learning rate of the last step.
std::vector<std::string> losses_of(const std::string& csv_path) { return step_column(csv_path, 5); }
std::vector<std::string> lrs_of(const std::string& csv_path) { return step_column(csv_path, 10); }

// A plain PGM of a vertical stroke, which the shipped weights read as a 1.
void write_stroke_pgm(const std::string& path) {
  std::string pgm = "P2 12 12 9\n";
  for (int row = 0; row < 12; ++row) {
    for (int column = 0; column < 12; ++column) {
      pgm += column >= 5 && column <= 6 && row >= 1 && row <= 10 ? '0' : '9';  // 0: ink, 9: paper
      pgm += column == 11 ? '\n' : ' ';
    }
  }
  ag::write_file_atomically(path, pgm);
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
        {"train", "--warmup-steps", "-1"}, {"train", "--warmup-steps", "ten"},
        {"eval", "--errors"}, {"graph"}, {"graph", "-o", "x.gif"}, {"predict"},
        {"export"}, {"export", "-o", "x.onnx", "--graph", "x.gif"},
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
  for (const char* option :
       {"--epochs", "--batch-size", "--seed", "--threads", "--warmup-steps", "--checkpoint", "--resume"})
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

// Trains `run_args` whole, then again with a checkpoint every 7 steps, killed without warning
// once one exists, and resumed: both must end on the same weights and losses.
void expect_exact_resume_after_sigkill(const TempDir& dir, const std::vector<std::string>& whole_args,
                                       std::vector<std::string> cut_args) {
  ASSERT_EQ(run(whole_args).status, 0);
  cut_args.insert(cut_args.end(), {"--checkpoint", dir / "ck", "--checkpoint-every", "7"});
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string binary = lenet();
    std::vector<char*> argv{binary.data()};
    for (auto& a : cut_args) argv.push_back(a.data());
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

TEST(Train, ResumingAfterSigkillEndsWithTheSameWeights) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  expect_exact_resume_after_sigkill(dir, small_run(dir, "whole"), small_run(dir, "cut"));
}

// The 1998 recipe resumed mid-epoch: one pattern per step in a fixed order, SDLM with the
// curvature estimated at the epoch's start (taken back from the checkpoint, not estimated again).
TEST(Train, TheLeNet1998RecipeResumesExactly) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  auto args = [&](const std::string& name) {
    return std::vector<std::string>{"train", "--model", "lenet1998", "--data", "data/mnist", "--limit", "300",
                                    "--epochs", "2", "--curvature-samples", "50", "--threads", "1", "--log-every",
                                    "5", "--out", dir / (name + ".safetensors"), "--metrics", dir / (name + ".csv"),
                                    "--plot", ""};
  };
  expect_exact_resume_after_sigkill(dir, args("whole"), args("cut"));
}

TEST(Train, ResumeRefusesContradictingOptions) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  ASSERT_EQ(run(small_run(dir, "a", {"--checkpoint", dir / "ck"})).status, 0);
  const Outcome r = run({"train", "--data", "data/mnist", "--resume", dir / "ck", "--lr", "0.2"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--lr 0.2 contradicts the checkpoint's 0.05"), std::string::npos) << r.output;
}

TEST(Train, WarmupRampsTheLearningRateOfTheFirstSteps) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  // One epoch of 20 steps at a constant rate, a CSV row for every step.
  auto every_step = [&](const std::string& name, std::vector<std::string> extra) {
    extra.insert(extra.end(), {"--schedule", "constant"});
    std::vector<std::string> args = small_run(dir, name, extra, "1");
    *(std::find(args.begin(), args.end(), "--log-every") + 1) = "1";
    return args;
  };
  ASSERT_EQ(run(every_step("flat", {})).status, 0);
  const Outcome r = run(every_step("warm", {"--warmup-steps", "4"}));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("lr 0.05 constant after 4 warm-up steps"), std::string::npos) << r.output;

  // Step k (from 0) of the warm-up uses lr * (k + 1) / 4, then the constant 0.05.
  const std::vector<std::string> lrs = lrs_of(dir / "warm.csv");
  ASSERT_EQ(lrs.size(), 20u);
  const double expected[] = {0.0125, 0.025, 0.0375, 0.05, 0.05, 0.05};
  for (std::size_t k = 0; k < std::size(expected); ++k)
    EXPECT_DOUBLE_EQ(std::stod(lrs[k]), expected[k]) << "step " << k;
  for (const std::string& lr : lrs_of(dir / "flat.csv")) EXPECT_DOUBLE_EQ(std::stod(lr), 0.05);
  // The logged rate is the one used: the first loss comes before any update, the second after a
  // smaller one.
  const auto flat = losses_of(dir / "flat.csv"), warmed = losses_of(dir / "warm.csv");
  ASSERT_EQ(flat.size(), 20u);
  EXPECT_EQ(flat[0], warmed[0]);
  EXPECT_NE(flat[1], warmed[1]);
  EXPECT_NE(weights_of(dir / "flat.safetensors"), weights_of(dir / "warm.safetensors"));
}

TEST(Train, WarmupAsLongAsTheRunIsOneLineExit2) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome r = run(small_run(dir, "w", {"--warmup-steps", "20"}, "1"));  // 1 epoch of 20 steps
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("--warmup-steps 20 must be less than the run's 20 steps"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "w.safetensors"));
}

TEST(Train, ResumeRefusesAContradictingWarmup) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  ASSERT_EQ(run(small_run(dir, "a", {"--warmup-steps", "5", "--checkpoint", dir / "ck"})).status, 0);
  const Outcome r = run({"train", "--data", "data/mnist", "--resume", dir / "ck", "--warmup-steps", "3"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("--warmup-steps 3 contradicts the checkpoint's 5"), std::string::npos) << r.output;
}

// A checkpoint without config.warmup-steps resumes with no warm-up. Made from a
// finished 1-epoch run with a constant rate, which is, but for config.epochs, the checkpoint a
// 2-epoch run writes after its first epoch.
TEST(Train, ACheckpointWithoutWarmupResumesAsNoWarmup) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const std::vector<std::string> constant{"--schedule", "constant"};
  ASSERT_EQ(run(small_run(dir, "whole", constant, "2")).status, 0);
  std::vector<std::string> first_epoch = constant;
  first_epoch.insert(first_epoch.end(), {"--checkpoint", dir / "ck"});
  ASSERT_EQ(run(small_run(dir, "half", first_epoch, "1")).status, 0);
  nn::Safetensors checkpoint = nn::load_safetensors(dir / "ck");
  ASSERT_EQ(checkpoint.metadata.erase("config.warmup-steps"), 1u);
  checkpoint.metadata["config.epochs"] = "2";
  nn::save_safetensors(dir / "old-ck", nn::NamedTensors(checkpoint.tensors.begin(), checkpoint.tensors.end()),
                       checkpoint.metadata);

  const Outcome refused = run({"train", "--data", "data/mnist", "--resume", dir / "old-ck", "--warmup-steps", "3"});
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("--warmup-steps 3 contradicts the checkpoint's 0"), std::string::npos)
      << refused.output;
  const Outcome resumed = run({"train", "--data", "data/mnist", "--resume", dir / "old-ck", "--out",
                               dir / "resumed.safetensors", "--metrics", "", "--plot", ""});
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(resumed.output.find("warm-up"), std::string::npos) << resumed.output;
  EXPECT_EQ(weights_of(dir / "whole.safetensors"), weights_of(dir / "resumed.safetensors"));
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

// The batches of an evaluation are split over the threads, each computed whole by one: the report
// (accuracy, loss, confusion matrix) must not depend on how many there are, an uneven split
// included (10 batches over 3 threads).
TEST(Eval, ReportIsTheSameOnAnyNumberOfThreads) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  const Outcome one = run({"eval", "--threads", "1"});
  ASSERT_EQ(one.status, 0) << one.output;
  for (const char* threads : {"2", "3"}) {
    const Outcome more = run({"eval", "--threads", threads});
    ASSERT_EQ(more.status, 0) << more.output;
    EXPECT_EQ(more.output, one.output) << threads << " threads";
  }
  const Outcome none = run({"eval", "--threads", "0"});
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.output.find("--threads"), std::string::npos) << none.output;
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

// The log-probabilities of every test image, as ONNX Runtime's are compared with (tests/onnx/).
TEST(Eval, LogProbsHoldsARowPerTestImageWhoseArgmaxesScoreTheAccuracy) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome r = run({"eval", "--model", "mlp", "--log-probs", dir / "mlp.safetensors"});
  ASSERT_EQ(r.status, 0) << r.output;
  const nn::Safetensors file = nn::load_safetensors(dir / "mlp.safetensors");
  const ag::Tensor& log_probs = file.tensors.at("log_probs");
  ASSERT_EQ(log_probs.shape(), (ag::Shape{10000, 10}));
  EXPECT_EQ(file.metadata.at("model"), "mlp");
  const nn::MnistSplit test_set = nn::load_mnist("data/mnist", nn::Split::Test);
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < 10000; ++i) {
    double total = 0;
    std::int64_t best = 0;
    for (std::int64_t k = 0; k < 10; ++k) {
      total += std::exp(log_probs.at(i * 10 + k));
      if (log_probs.at(i * 10 + k) > log_probs.at(i * 10 + best)) best = k;
    }
    ASSERT_NEAR(total, 1.0, 1e-5) << "row " << i;
    correct += best == test_set.labels[static_cast<std::size_t>(i)];
  }
  EXPECT_EQ(correct, static_cast<std::int64_t>(number_after(r.output, "accuracy") * 10000 + 0.5)) << r.output;
}

// ---------------------------------------------------------------------------------------------
// lenet export (the graph itself: tests/models/export/onnx_test.cpp; ONNX Runtime: tests/onnx/).

TEST(Export, WritesTheOnnxFileWithTheWeightsRecordAndItsPicture) {
  TempDir dir;
  const Outcome r = run({"export", "--model", "mlp", "-o", dir / "mlp.onnx", "--graph", dir / "mlp.svg"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("wrote " + (dir / "mlp.onnx")), std::string::npos) << r.output;
  const std::string onnx = ag::read_file(dir / "mlp.onnx");
  for (const char* text : {"layers.1.weight", "log_probs", "image", "test_accuracy", "0.984900",
                           "lenet train --model mlp"})
    EXPECT_NE(onnx.find(text), std::string::npos) << text;
  EXPECT_EQ(onnx.find("normalization_mean"), std::string::npos) << "the graph normalises: not for the user to do";
  const std::string svg = ag::read_file(dir / "mlp.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("Gemm"), std::string::npos);
}

// Weights that record no test accuracy (a checkpoint of one's own): measured on MNIST; a --data
// that holds no MNIST is one line naming it, and nothing is written.
TEST(Export, MeasuresTheTestAccuracyTheWeightsDoNotRecord) {
  TempDir dir;
  const nn::Safetensors shipped = nn::load_safetensors("models/lenet5.safetensors");
  nn::NamedTensors tensors(shipped.tensors.begin(), shipped.tensors.end());
  nn::save_safetensors(dir / "bare.safetensors", tensors, {{"model", "lenet5"}});
  const Outcome nowhere =
      run({"export", "--weights", dir / "bare.safetensors", "-o", dir / "a.onnx", "--data", dir / "nowhere"});
  EXPECT_EQ(nowhere.status, 1) << nowhere.output;
  EXPECT_EQ(line_count(nowhere.output), 1) << nowhere.output;
  EXPECT_NE(nowhere.output.find(dir / "nowhere"), std::string::npos) << nowhere.output;
  EXPECT_FALSE(fs::exists(dir / "a.onnx"));
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  const Outcome r = run({"export", "--weights", dir / "bare.safetensors", "-o", dir / "b.onnx"});
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string onnx = ag::read_file(dir / "b.onnx");
  EXPECT_NE(onnx.find("0.994300"), std::string::npos) << "lenet eval's accuracy of these weights";
  EXPECT_NE(onnx.find("measured by lenet export"), std::string::npos);
}

TEST(Export, AnOpWithoutAnOnnxFormIsOneLineNamingItAndTheModelAndWritesNothing) {
  TempDir dir;
  ag::Generator gen(1);
  nn::save_safetensors(dir / "no_onnx.safetensors",
                       {{"fc.weight", ag::Tensor::uniform({10, 784}, -0.03, 0.03, gen)}, {"fc.bias", ag::Tensor({10})}},
                       {{"model", "no_onnx"}, {"test_accuracy", "0.5"}});
  const Outcome r = run_binary(broken_model(), {"export", "--model", "no_onnx", "--weights", dir / "no_onnx.safetensors",
                                                "-o", dir / "no_onnx.onnx", "--graph", dir / "no_onnx.svg"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(r.output, "lenet export: model no_onnx uses op softsign, which has no ONNX form\n");
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir.path)) left.push_back(entry.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"no_onnx.safetensors"}) << "no file, not even a temporary one";
}

// Run from a directory outside the repository, the default weights and MNIST are found through the
// binary's location.
TEST(DefaultPaths, PredictFindsTheShippedWeightsFromAnotherDirectory) {
  if (!fs::exists("models/lenet5.safetensors")) GTEST_SKIP() << "no shipped weights";
  TempDir dir;
  write_stroke_pgm(dir / "stroke.pgm");
  const Outcome r = run_in(dir.path.string(), {"predict", "stroke.pgm"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.rfind("stroke.pgm: 1 (", 0), 0u) << r.output;
}

TEST(DefaultPaths, EvalFindsTheShippedWeightsAndMnistFromAnotherDirectory) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome r = run_in(dir.path.string(), {"eval"});
  ASSERT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(accuracy ([0-9.]+))"))) << r.output;
  EXPECT_GE(std::stod(m[1]), 0.993);
  EXPECT_NE(r.output.find(fs::absolute("models/lenet5.safetensors").lexically_normal().string()), std::string::npos)
      << "names the weights it found: " << r.output;
}

// Given explicitly, a path is taken as it is: relative to the current directory, never searched for.
TEST(DefaultPaths, AnExplicitWeightsPathIsNotSearchedFor) {
  TempDir dir;
  write_stroke_pgm(dir / "stroke.pgm");
  const Outcome r = run_in(dir.path.string(), {"predict", "--weights", "models/lenet5.safetensors", "stroke.pgm"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("models/lenet5.safetensors: cannot open"), std::string::npos) << r.output;
}

// A binary with nothing near it, run where there is nothing either, names every place it looked.
TEST(DefaultPaths, NotFoundAnywhereNamesEveryAbsolutePathTried) {
  TempDir dir;
  fs::create_directories(dir.path / "build/tools");
  fs::create_directories(dir.path / "elsewhere");
  const std::string binary = dir / "build/tools/lenet";
  fs::copy_file(fs::absolute(lenet()), binary);
  const std::string weights = fs::absolute("models/lenet5.safetensors").string();
  struct Case {
    std::vector<std::string> args;
    std::string missing;
  };
  for (const Case& c : {Case{{"predict", "stroke.pgm"}, "models/lenet5.safetensors"},
                        Case{{"serve", "--port", "0"}, "models/lenet5.safetensors"},
                        Case{{"eval", "--weights", weights}, "data/mnist"},
                        Case{{"train"}, "data/mnist"}}) {
    const Outcome r = run_in(dir / "elsewhere", c.args, binary);
    EXPECT_EQ(r.status, 1) << c.args[0] << ": " << r.output;
    EXPECT_EQ(line_count(r.output), 1) << r.output;
    for (const char* place : {"elsewhere", "build/tools", "build", "."})
      EXPECT_NE(r.output.find((dir.path / place / c.missing).lexically_normal().string()), std::string::npos)
          << c.args[0] << ": " << place << " in " << r.output;
  }
}

// ---------------------------------------------------------------------------------------------
// Models: --model on every verb, lenet models, lenet gradcheck

TEST(Models, ListsEveryRegisteredModelWithItsParameterCount) {
  const Outcome r = run({"models"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"((^|\n)lenet5 +61706 +- +\[N, 1, 28, 28\])"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"((^|\n)mlp +266610 +- +\[N, 1, 28, 28\])"))) << r.output;
  // The 1998 net counts only Table I's connections, as the paper does.
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"((^|\n)lenet1998 +60000 +340908 +\[N, 1, 28, 28\])")))
      << r.output;
  EXPECT_LT(r.output.find("\nlenet5 "), r.output.find("\nmlp ")) << "in registration order";
}

TEST(Models, AnUnknownModelIsOneLineListingTheRegisteredOnesExit2) {
  for (const char* verb : {"eval", "train", "predict", "graph", "bench", "gradcheck", "export"}) {
    const Outcome r = run({verb, "--model", "nosuch"});
    EXPECT_EQ(r.status, 2) << verb << ": " << r.output;
    EXPECT_EQ(line_count(r.output), 1) << verb << ": " << r.output;
    EXPECT_NE(r.output.find("unknown model 'nosuch'"), std::string::npos) << verb << ": " << r.output;
    EXPECT_NE(r.output.find("lenet5, mlp"), std::string::npos) << verb << ": " << r.output;
  }
}

TEST(Models, WeightsOfAnotherModelAreRefusedInOneLineNamingBoth) {
  TempDir dir;
  // --data given explicitly so that the weights are read before MNIST is looked for.
  const Outcome r = run({"eval", "--model", "mlp", "--weights", "models/lenet5.safetensors", "--data", dir.path.string()});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("'lenet5'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'mlp'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("models/lenet5.safetensors"), std::string::npos) << r.output;
}

TEST(Mlp, EvalOfTheShippedWeightsScoresAbove98Percent) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  const Outcome r = run({"eval", "--model", "mlp"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("models/mlp.safetensors (mlp)"), std::string::npos) << "its own shipped weights: " << r.output;
  // LeCun et al. 1998 report 3.05% test error for this network.
  EXPECT_GE(number_after(r.output, "accuracy"), 0.98) << r.output;
}

TEST(Mlp, PredictRecognisesMnistTestDigits) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const nn::MnistSplit test_set = nn::load_mnist("data/mnist", nn::Split::Test);
  // The first five test digits as dark ink on white paper.
  std::vector<std::string> args{"predict", "--model", "mlp"};
  for (std::int64_t i = 0; i < 5; ++i) {
    nn::GrayImage image{.width = 28, .height = 28, .pixels = {}};
    for (std::int64_t p = 0; p < 784; ++p)
      image.pixels.push_back(255.0F - static_cast<float>(test_set.images[static_cast<std::size_t>(i * 784 + p)]));
    args.push_back(dir / ("digit" + std::to_string(i) + ".png"));
    ag::write_file_atomically(args.back(), nn::encode_png(image));
  }
  const Outcome r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(line_count(r.output), 5) << r.output;
  for (std::int64_t i = 0; i < 5; ++i) {
    const std::string expected = dir / ("digit" + std::to_string(i) + ".png") + ": " +
                                 std::to_string(test_set.labels[static_cast<std::size_t>(i)]) + " (p=";
    EXPECT_NE(r.output.find(expected), std::string::npos) << expected << " in " << r.output;
  }
}

TEST(Mlp, GraphDrawsItsLayers) {
  TempDir dir;
  ASSERT_EQ(run({"graph", "--model", "mlp", "-o", dir / "mlp.dot"}).status, 0);
  const std::string dot = ag::read_file(dir / "mlp.dot");
  for (const char* label : {"layers.1.weight\\n[300, 784]", "layers.3.weight\\n[100, 300]", "layers.5.bias\\n[10]",
                            "tanh\\n[1, 100]", "[1, 10]"})
    EXPECT_NE(dot.find(label), std::string::npos) << label;
  EXPECT_EQ(dot.find("conv"), std::string::npos) << "no LeNet-5 in it";
  const Outcome svg = run({"graph", "--model", "mlp", "-o", dir / "mlp.svg"});
  ASSERT_EQ(svg.status, 0) << svg.output;
  const std::string picture = ag::read_file(dir / "mlp.svg");
  EXPECT_NE(picture.find("<svg"), std::string::npos);
  EXPECT_NE(picture.find("layers.5.weight"), std::string::npos);
}

TEST(Mlp, BenchMeasuresTrainingAndInference) {
  const Outcome r = run({"bench", "--model", "mlp", "--batch", "10", "--threads", "1", "--seconds", "0.05",
                         "--rounds", "1", "--modes", "train,infer", "--synthetic"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("lenet bench: mlp"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\ntrain +1 thread +[0-9]+)"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\ninfer +1 thread +[0-9]+)"))) << r.output;
}

TEST(Mlp, TrainWritesWeightsOfTheMlpThatEvalReads) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome r = run({"train", "--model", "mlp", "--limit", "640", "--epochs", "1", "--threads", "2",
                         "--out", dir / "m.safetensors", "--metrics", "", "--plot", ""});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("lenet train: mlp"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("266610 parameters"), std::string::npos) << r.output;
  const nn::Safetensors file = nn::load_safetensors(dir / "m.safetensors");
  EXPECT_EQ(file.metadata.at("model"), "mlp");
  std::vector<std::string> names;
  for (const auto& [name, tensor] : file.tensors) names.push_back(name);
  std::vector<std::string> expected = checked_tensors("mlp");
  expected.erase(expected.begin());  // "input"
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);

  const Outcome eval = run({"eval", "--model", "mlp", "--weights", dir / "m.safetensors"});
  ASSERT_EQ(eval.status, 0) << eval.output;
  // Ten steps of the MLP's recipe reach about 0.6; chance is 0.1.
  EXPECT_GE(number_after(eval.output, "accuracy"), 0.3) << eval.output;
}

TEST(Train, ResumeRefusesAnotherModelThanTheCheckpoints) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome first = run({"train", "--model", "mlp", "--limit", "640", "--epochs", "1", "--checkpoint", dir / "ck",
                             "--out", dir / "m.safetensors", "--metrics", "", "--plot", ""});
  ASSERT_EQ(first.status, 0) << first.output;
  const Outcome r = run({"train", "--resume", dir / "ck", "--model", "lenet5", "--out", dir / "l.safetensors"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(line_count(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("--model lenet5 contradicts the checkpoint's mlp"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "l.safetensors"));
}

TEST(Gradcheck, PassesForTheBuiltInModelsWithALinePerTensor) {
  for (const char* model : {"lenet5", "mlp"}) {
    const Outcome r = run({"gradcheck", "--model", model});
    EXPECT_EQ(r.status, 0) << r.output;
    for (const std::string& tensor : checked_tensors(model))
      EXPECT_TRUE(gradcheck_line_ok(r.output, tensor)) << tensor << " in " << r.output;
    EXPECT_NE(r.output.find("lenet gradcheck: " + std::string(model) + " passed"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("FAIL"), std::string::npos) << r.output;
  }
}

TEST(Gradcheck, FailsForAModelWithAWrongBackward) {
  const Outcome r = run_binary(broken_model(), {"gradcheck", "--model", "wrong_tanh"});
  EXPECT_EQ(r.status, 1) << r.output;
  for (const char* tensor : {"input", "fc.weight", "fc.bias"})
    EXPECT_TRUE(std::regex_search(r.output, std::regex(std::string("(^|\\n)") + tensor + " .*  FAIL(\\n|$)")))
        << tensor << " in " << r.output;
  EXPECT_NE(r.output.find("lenet gradcheck: wrong_tanh FAILED: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Jacobian mismatch"), std::string::npos) << "says where: " << r.output;
}

// ---------------------------------------------------------------------------------------------
// A model added by a program of its own (docs/examples/small_cnn.cpp): every verb works for it.

TEST(AddedModel, IsListedAfterTheBuiltInModels) {
  const Outcome r = run_binary(small_cnn(), {"models"});
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* model : {"\nlenet5 ", "\nmlp ", "\nsmall_cnn "})
    EXPECT_NE(r.output.find(model), std::string::npos) << model << " in " << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\nsmall_cnn +4010 )"))) << r.output;
}

TEST(AddedModel, PassesGradcheck) {
  const Outcome r = run_binary(small_cnn(), {"gradcheck", "--model", "small_cnn"});
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* tensor : {"input", "conv.weight", "conv.bias", "fc.weight", "fc.bias"})
    EXPECT_TRUE(gradcheck_line_ok(r.output, tensor)) << tensor << " in " << r.output;
}

TEST(AddedModel, TrainsAndItsWeightsEvaluate) {
  if (!have_mnist()) GTEST_SKIP() << "data/mnist is missing";
  TempDir dir;
  const Outcome train = run_binary(small_cnn(), {"train", "--model", "small_cnn", "--limit", "1000", "--epochs", "1",
                                                 "--out", dir / "s.safetensors", "--metrics", "", "--plot", ""});
  ASSERT_EQ(train.status, 0) << train.output;
  EXPECT_EQ(nn::load_safetensors(dir / "s.safetensors").metadata.at("model"), "small_cnn");
  const Outcome eval = run_binary(small_cnn(), {"eval", "--model", "small_cnn", "--weights", dir / "s.safetensors"});
  ASSERT_EQ(eval.status, 0) << eval.output;
  EXPECT_NE(eval.output.find("(small_cnn)"), std::string::npos) << eval.output;
  // 16 steps on 1,000 images reach about 0.77; chance is 0.1.
  EXPECT_GE(number_after(eval.output, "accuracy"), 0.5) << eval.output;
  // The built-in lenet command does not know it.
  EXPECT_EQ(run({"eval", "--model", "small_cnn", "--weights", dir / "s.safetensors"}).status, 2);
}
