#include "loom/plan/verify.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/launch/child_process.h"
#include "loom/launch/signal_watcher.h"
#include "loom/launch/worker_env.h"

namespace loom::plan {

namespace {

using Clock = std::chrono::steady_clock;

// The flags measure sets, or that would change the run's length or write the user's
// files, with why a measurement does not take them from train_args.
struct OwnedFlag {
  const char* name;
  const char* why;
};
constexpr OwnedFlag kOwnedFlags[] = {
    {"steps", "the measurement sets the run's length"},
    {"time-limit", "the measurement sets the run's length"},
    {"log-every", "the measurement sets it"},
    {"metrics", "the measurement writes its own metrics"},
    {"eval", "the measurement runs without evaluation"},
    {"progress", "the measurement runs with --progress off"},
    {"save", "a measurement writes no outputs"},
    {"save-scripted", "a measurement writes no outputs"},
    {"trace", "a measurement writes no outputs"},
    {"checkpoint-dir", "a measurement writes no outputs"},
    {"resume", "a measurement starts from scratch"},
    {"record-indices", "a measurement writes no outputs"},
    {"ps-save", "a measurement writes no outputs"},
};

// "--name", "--name=value" and "--no-name" all set --name.
void reject_owned_flags(const std::vector<std::string>& args) {
  for (const auto& arg : args) {
    if (arg.rfind("--", 0) != 0) continue;
    std::string name = arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - 2);
    if (name.rfind("no-", 0) == 0) name = name.substr(3);
    for (const auto& flag : kOwnedFlags) {
      LOOM_CHECK(name != flag.name, ConfigError, "plan --verify: the train arguments must not set --{} ({}): got {}",
                 flag.name, flag.why, arg);
    }
  }
}

// Variables of an enclosing job: with them, `loom train --nproc N` would take itself for
// one worker of that job instead of starting its own.
bool job_variable(const std::string& name) {
  static const char* const kNames[] = {
      "RANK",
      "WORLD_SIZE",
      "LOCAL_RANK",
      "LOCAL_WORLD_SIZE",
      "GROUP_RANK",
      "NODE_RANK",
      "GROUP_WORLD_SIZE",
      "MASTER_ADDR",
      "MASTER_PORT",
      "SLURM_PROCID",
      "SLURM_NTASKS",
      "SLURM_LOCALID",
      "SLURM_NTASKS_PER_NODE",
      "LOOM_LAUNCHED",
      "LOOM_RESTART_COUNT",
      "LOOM_MAX_RESTARTS",
      "LOOM_FAULT_INJECT",
      "LOOM_PS_TOKEN",
      "LOOM_PS_CURVE_KEY_FILE",
  };
  if (name.rfind("OMPI_COMM_WORLD_", 0) == 0) return true;
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return name == n; });
}

std::vector<std::string> child_environment() {
  std::vector<std::string> env;
  for (auto& entry : launch::current_environment()) {
    if (!job_variable(entry.substr(0, entry.find('=')))) env.push_back(std::move(entry));
  }
  return env;
}

// A directory for the metrics file: options.work_dir, or a fresh one under TMPDIR that
// is removed when this goes out of scope.
class WorkDir {
 public:
  explicit WorkDir(const std::string& requested) {
    if (!requested.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(requested, ec);
      LOOM_CHECK(!ec, ConfigError, "plan --verify: cannot create the work directory {}: {}", requested, ec.message());
      path_ = requested;
      return;
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/loom-verify-XXXXXX";
    LOOM_CHECK(::mkdtemp(pattern.data()) != nullptr, Error, "plan --verify: cannot create a directory {}: {}", pattern,
               std::strerror(errno));
    path_ = pattern;
    owned_ = true;
  }
  ~WorkDir() {
    if (!owned_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool owned_ = false;
};

// The last non-blank line of `text`, without trailing blanks.
std::string last_line(const std::string& text) {
  std::string line;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    while (!l.empty() && std::isspace(static_cast<unsigned char>(l.back()))) l.pop_back();
    if (!l.empty()) line = l;
  }
  return line;
}

// A failed run's one line: its last stderr line (with several workers, the launcher's
// "rank 1 exited with code 1"), after the first error line when that is another (the
// cause, e.g. "rank 1: data error: cannot open ..."), without the relay's "[1]: ".
std::string failure_line(const std::string& stderr_text) {
  const std::string last = last_line(stderr_text);
  std::string first_error;
  std::istringstream in(stderr_text);
  for (std::string l; std::getline(in, l);) {
    if (l.find(" error: ") == std::string::npos && l.find("error: ") != 0) continue;
    while (!l.empty() && std::isspace(static_cast<unsigned char>(l.back()))) l.pop_back();
    if (l.size() > 2 && l[0] == '[') {
      if (const auto close = l.find("]: "); close != std::string::npos) l = l.substr(close + 3);
    }
    first_error = l;
    break;
  }
  if (first_error.empty() || last.find(first_error) != std::string::npos) return last;
  return first_error + "; " + last;
}

// Reads what is available from a non-blocking descriptor; closes it at end of stream.
// Keeps at most the last `keep` bytes in `tail` (0: discards).
void read_available(launch::UniqueFd& fd, std::string* tail, size_t keep) {
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n > 0) {
      if (tail) {
        tail->append(buffer, static_cast<size_t>(n));
        if (tail->size() > keep) tail->erase(0, tail->size() - keep);
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    fd.reset();  // end of stream or an error
    return;
  }
}

struct ChildOutcome {
  launch::ExitStatus status;
  bool timed_out = false;
  std::string stderr_tail;
  double wall_s = 0;
};

// Runs the child to its end: drains its output, stops it at the deadline (SIGTERM to its
// group, SIGKILL after a grace), passes SIGINT/SIGTERM/SIGHUP on to it.
ChildOutcome run_child(const launch::SpawnOptions& spawn, double timeout_s) {
  constexpr auto kGrace = std::chrono::seconds(10);
  constexpr size_t kKeep = 64 * 1024;
  // Watched only when no other watcher is installed (there may be one process-wide).
  std::unique_ptr<launch::SignalWatcher> signals;
  try {
    signals = std::make_unique<launch::SignalWatcher>(std::vector<int>{SIGINT, SIGTERM, SIGHUP});
  } catch (const LaunchError&) {}
  const auto start = Clock::now();
  launch::ChildProcess child = launch::ChildProcess::spawn(spawn);
  launch::UniqueFd out = child.take_stdout(), err = child.take_stderr();
  for (auto* fd : {&out, &err}) ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);

  ChildOutcome outcome;
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  std::optional<Clock::time_point> kill_at;  // set once the child was asked to stop
  bool killed = false;
  int received = 0;  // a signal passed on to the child
  std::optional<Clock::time_point> exited_at;
  for (;;) {
    if (!exited_at) {
      if (child.try_wait()) exited_at = Clock::now();
    }
    // After the exit, output still held open by something the child started is read
    // for at most 2 s more.
    if (exited_at && ((!out && !err) || Clock::now() - *exited_at > std::chrono::seconds(2))) break;
    const auto now = Clock::now();
    if (!exited_at && !kill_at && now >= deadline) {
      outcome.timed_out = true;
      child.signal_group(SIGTERM);
      kill_at = now + kGrace;
    }
    if (!exited_at && kill_at && !killed && now >= *kill_at) {
      child.signal_group(SIGKILL);
      killed = true;
    }
    pollfd fds[3];
    int n = 0;
    for (auto* fd : {&out, &err}) {
      if (*fd) fds[n++] = {fd->get(), POLLIN, 0};
    }
    if (signals) fds[n++] = {signals->fd(), POLLIN, 0};
    ::poll(fds, static_cast<nfds_t>(n), 100);
    if (out) read_available(out, nullptr, 0);
    if (err) read_available(err, &outcome.stderr_tail, kKeep);
    if (signals) {
      for (const int sig : signals->take()) {
        if (sig == SIGCHLD || exited_at) continue;
        received = sig;
        child.signal_group(sig);
        if (!kill_at) kill_at = Clock::now() + kGrace;
      }
    }
  }
  outcome.status = *child.status();
  outcome.wall_s = std::chrono::duration<double>(*exited_at - start).count();
  child.signal_group(SIGKILL);  // anything the run left behind in its group
  LOOM_CHECK(received == 0, LaunchError, "plan --verify: stopped by {} (the measurement run was stopped too)",
             launch::signal_name(received));
  return outcome;
}

}  // namespace

double steady_samples_per_s(const std::string& metrics_jsonl, int64_t warmup_steps) {
  struct Record {
    int64_t step;
    double samples_per_s, step_ms;
  };
  std::vector<Record> records;
  std::istringstream in(metrics_jsonl);
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    LOOM_CHECK(!j.is_discarded() && j.is_object(), Error, "metrics: not a JSON object: {}", line);
    if (j.value("event", "") != "step") continue;
    LOOM_CHECK(j.contains("step") && j["step"].is_number() && j.contains("samples_per_s") &&
                   j["samples_per_s"].is_number() && j.contains("step_ms") && j["step_ms"].is_number(),
               Error, "metrics: a step record without a number for step, samples_per_s or step_ms: {}", line);
    records.push_back({j["step"].get<int64_t>(), j["samples_per_s"].get<double>(), j["step_ms"].get<double>()});
  }
  std::sort(records.begin(), records.end(), [](const Record& a, const Record& b) { return a.step < b.step; });
  // The timed part starts at the first record boundary at or after the warm-up.
  int64_t prev = 0;
  if (warmup_steps > 0) {
    const auto first =
        std::find_if(records.begin(), records.end(), [&](const Record& r) { return r.step >= warmup_steps; });
    LOOM_CHECK(first != records.end(), Error, "metrics: no step record at or after the warm-up (step {})",
               warmup_steps);
    prev = first->step;
  }
  double seconds = 0, samples = 0;
  for (const auto& r : records) {
    if (r.step <= prev) continue;
    const double s = r.step_ms * static_cast<double>(r.step - prev) / 1e3;
    seconds += s;
    samples += r.samples_per_s * s;
    prev = r.step;
  }
  LOOM_CHECK(seconds > 0 && std::isfinite(samples / seconds), Error,
             "metrics: no timed step records after the warm-up (step {})", warmup_steps);
  return samples / seconds;
}

MeasuredRun measure(const std::vector<std::string>& train_args, const MeasureOptions& options) {
  LOOM_CHECK(!options.loom.empty(), ConfigError, "plan --verify: the loom executable is not set");
  LOOM_CHECK(options.log_every >= 1, ConfigError, "plan --verify: log_every must be at least 1, got {}",
             options.log_every);
  LOOM_CHECK(options.warmup_steps >= 0 && options.warmup_steps < options.steps, ConfigError,
             "plan --verify: need 0 <= warm-up steps < steps, got {} warm-up steps of {}", options.warmup_steps,
             options.steps);
  LOOM_CHECK(options.timeout_s > 0 && std::isfinite(options.timeout_s), ConfigError,
             "plan --verify: the timeout must be a positive number of seconds, got {}", options.timeout_s);
  reject_owned_flags(train_args);

  WorkDir dir(options.work_dir);
  const std::string metrics = dir.path() + "/m.jsonl";
  std::filesystem::remove(metrics);

  launch::SpawnOptions spawn;
  spawn.argv = {options.loom, "train"};
  spawn.argv.insert(spawn.argv.end(), train_args.begin(), train_args.end());
  for (const std::string& arg : {std::string("--steps"), std::to_string(options.steps), std::string("--log-every"),
                                 std::to_string(options.log_every), std::string("--metrics"), metrics,
                                 std::string("--no-eval"), std::string("--progress"), std::string("off")}) {
    spawn.argv.push_back(arg);
  }
  spawn.env = child_environment();
  spawn.capture_output = true;
  spawn.default_signals = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

  const ChildOutcome child = run_child(spawn, options.timeout_s);
  MeasuredRun run;
  run.wall_s = child.wall_s;
  const std::string last = last_line(child.stderr_tail);
  if (child.timed_out) {
    run.error = fmt::format("loom train did not finish within {:g} s (stopped){}", options.timeout_s,
                            last.empty() ? "" : "; its last line: " + last);
    return run;
  }
  if (!child.status.success()) {
    run.error = !last.empty() ? failure_line(child.stderr_tail)
                              : fmt::format("loom train {} without a message", child.status.describe());
    return run;
  }
  try {
    std::ifstream in(metrics);
    LOOM_CHECK(in, Error, "loom train wrote no metrics file {}", metrics);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    run.samples_per_s = steady_samples_per_s(text, options.warmup_steps);
    const auto summary = nlohmann::json::parse(last_line(text), nullptr, /*allow_exceptions=*/false);
    LOOM_CHECK(!summary.is_discarded() && summary.value("event", "") == "summary" &&
                   summary.contains("samples_per_s") && summary["samples_per_s"].is_number(),
               Error, "metrics: the last record is not a summary with samples_per_s");
    run.summary_samples_per_s = summary["samples_per_s"].get<double>();
    run.ok = true;
  } catch (const Error& e) {
    run.samples_per_s = 0;
    run.error = e.what();
  } catch (const nlohmann::json::exception& e) {
    run.samples_per_s = 0;
    run.error = fmt::format("metrics: {}", e.what());
  }
  return run;
}

}  // namespace loom::plan
