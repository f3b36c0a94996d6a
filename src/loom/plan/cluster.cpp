#include "loom/plan/cluster.h"

#include <sched.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <thread>
#include <tuple>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/toml_names.h"

namespace loom::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kMiB = 1024.0 * 1024.0;

// ---- Costs ------------------------------------------------------------------

// A flat ring allreduce of `bytes` over `ranks` processes on `link`.
double ring_s(int ranks, double bytes, const Link& link) {
  if (ranks <= 1) return 0;
  const double n = ranks;
  return 2 * (n - 1) * link.latency_s + 2 * (n - 1) / n * bytes / link.bandwidth_Bps;
}

// The link a ring of `ranks` crosses: intra when every rank is on one node, else the
// slower of the two (its latency and bandwidth taken apart).
Link ring_link(const Cluster& c, int ranks) {
  if (ranks <= c.processes_per_node) return c.intra;
  return {std::max(c.intra.latency_s, c.inter.latency_s), std::min(c.intra.bandwidth_Bps, c.inter.bandwidth_Bps)};
}

// Seconds at `bytes` along the rows of one measured curve (sorted by bytes, at least
// one): linear between points; below the first, log-log along the first two points
// (slope clamped to [0, 1], so a latency floor stays flat); above the last,
// proportional to bytes (the largest sizes are bandwidth-bound); one point alone,
// proportional to `formula`.
double along_curve(const std::vector<const Measurement*>& rows, double bytes,
                   const std::function<double(double)>& formula) {
  const Measurement& first = *rows.front();
  const Measurement& last = *rows.back();
  if (rows.size() == 1) {
    const double f0 = formula(static_cast<double>(first.bytes));
    return f0 > 0 ? first.seconds * formula(bytes) / f0 : first.seconds;
  }
  if (bytes < first.bytes) {
    const Measurement& second = *rows[1];
    double slope = std::log(second.seconds / first.seconds) / std::log(static_cast<double>(second.bytes) / first.bytes);
    if (!std::isfinite(slope)) slope = 0;
    slope = std::clamp(slope, 0.0, 1.0);
    return first.seconds * std::pow(std::max(bytes, 1.0) / first.bytes, slope);
  }
  if (bytes > last.bytes) return last.seconds * bytes / last.bytes;
  for (size_t i = 0; i + 1 < rows.size(); ++i) {
    const Measurement& a = *rows[i];
    const Measurement& b = *rows[i + 1];
    if (bytes <= b.bytes) {
      if (b.bytes == a.bytes) return b.seconds;
      return a.seconds + (b.seconds - a.seconds) * (bytes - a.bytes) / (b.bytes - a.bytes);
    }
  }
  return last.seconds;
}

// The rows of `table` with exactly (ranks, servers), sorted by bytes.
std::vector<const Measurement*> rows_of(const std::vector<Measurement>& table, int ranks, int servers) {
  std::vector<const Measurement*> rows;
  for (const auto& m : table) {
    if (m.ranks == ranks && m.servers == servers) rows.push_back(&m);
  }
  std::sort(rows.begin(), rows.end(), [](const Measurement* a, const Measurement* b) { return a->bytes < b->bytes; });
  return rows;
}

// A collective from `table`: the curve at the nearest measured ranks (ties: the larger),
// scaled by the ring formula's ratio when `ranks` itself was not measured.
double collective_s(const Cluster& c, const std::vector<Measurement>& table, int ranks, int64_t bytes) {
  if (ranks <= 1 || bytes <= 0) return 0;
  const Link link = ring_link(c, ranks);
  if (table.empty() || ranks > c.processes_per_node) return ring_s(ranks, static_cast<double>(bytes), link);
  int nearest = table.front().ranks;
  for (const auto& m : table) {
    const int d = std::abs(m.ranks - ranks), best = std::abs(nearest - ranks);
    if (d < best || (d == best && m.ranks > nearest)) nearest = m.ranks;
  }
  const auto formula = [&](int n) { return [&, n](double b) { return ring_s(n, b, link); }; };
  const double t = along_curve(rows_of(table, nearest, 0), static_cast<double>(bytes), formula(nearest));
  if (nearest == ranks) return t;
  const double at_nearest = ring_s(nearest, static_cast<double>(bytes), link);
  return at_nearest > 0 ? t * ring_s(ranks, static_cast<double>(bytes), link) / at_nearest : t;
}

// Unit conversions of the file's keys, the one way they are read.
double us_to_s(double us) { return us / 1e6; }
double gbs_to_Bps(double gbs) { return gbs * 1e9; }

// ---- TOML in ----------------------------------------------------------------

// Reads one file's tables, every error one line naming the file, the line and the key.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const toml::node* node, const std::string& key, const std::string& what) const {
    if (node && node->source().begin.line > 0) {
      LOOM_THROW(DataError, "cluster file {}:{}: {} {}", source_, node->source().begin.line, key, what);
    }
    LOOM_THROW(DataError, "cluster file {}: {} {}", source_, key, what);
  }

  // Fails on any key of `table` (named `prefix`) not in `known`.
  void only(const toml::table& table, const std::string& prefix, const std::vector<std::string>& known) const {
    for (const auto& [key, node] : table) {
      const std::string name(key.str());
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        fail(&node, join(prefix, name), fmt::format("is not a known key (known here: {})", list));
      }
    }
  }

  const toml::table* table(const toml::table& parent, const std::string& prefix, const std::string& key,
                           bool required) const {
    const toml::node* node = parent.get(key);
    if (!node) {
      if (required) fail(nullptr, join(prefix, key), "is missing");
      return nullptr;
    }
    if (!node->is_table()) fail(node, join(prefix, key), fmt::format("must be a table, got {}", toml_type_name(*node)));
    return node->as_table();
  }

  double number(const toml::node& node, const std::string& key) const {
    if (!node.is_number()) fail(&node, key, fmt::format("must be a number, got {}", toml_type_name(node)));
    const double v =
        node.is_integer() ? static_cast<double>(node.as_integer()->get()) : node.as_floating_point()->get();
    if (!std::isfinite(v)) fail(&node, key, "must be finite");
    return v;
  }
  int64_t integer(const toml::node& node, const std::string& key) const {
    if (!node.is_integer()) fail(&node, key, fmt::format("must be an integer, got {}", toml_type_name(node)));
    return node.as_integer()->get();
  }

  // The number at table[key]; `fallback` when absent and not required. Checked >= min
  // (> min when `strict`).
  double number_at(const toml::table& t, const std::string& prefix, const std::string& key, bool required,
                   double fallback, double min, bool strict) const {
    const toml::node* node = t.get(key);
    if (!node) {
      if (required) fail(nullptr, join(prefix, key), "is missing");
      return fallback;
    }
    const double v = number(*node, join(prefix, key));
    if (strict ? !(v > min) : !(v >= min)) {
      fail(node, join(prefix, key), fmt::format("must be {} {}, got {}", strict ? "above" : "at least", min, v));
    }
    return v;
  }
  int integer_at(const toml::table& t, const std::string& prefix, const std::string& key, bool required, int fallback,
                 int min) const {
    const toml::node* node = t.get(key);
    if (!node) {
      if (required) fail(nullptr, join(prefix, key), "is missing");
      return fallback;
    }
    const int64_t v = integer(*node, join(prefix, key));
    if (v < min || v > std::numeric_limits<int>::max()) {
      fail(node, join(prefix, key), fmt::format("must be at least {}, got {}", min, v));
    }
    return static_cast<int>(v);
  }

  Link link(const toml::table& t, const std::string& prefix) const {
    only(t, prefix, {"latency_us", "bandwidth_gbs"});
    Link l;
    l.latency_s = us_to_s(number_at(t, prefix, "latency_us", true, 0, 0, false));
    l.bandwidth_Bps = gbs_to_Bps(number_at(t, prefix, "bandwidth_gbs", true, 0, 0, true));
    return l;
  }

  // An array of rows [ranks, bytes, seconds] (with_servers: [workers, servers, bytes, seconds]).
  std::vector<Measurement> table_rows(const toml::table& t, const std::string& prefix, const std::string& key,
                                      bool with_servers) const {
    std::vector<Measurement> out;
    const toml::node* node = t.get(key);
    if (!node) return out;
    const std::string name = join(prefix, key);
    const char* shape = with_servers ? "[workers, servers, bytes, seconds]" : "[ranks, bytes, seconds]";
    if (!node->is_array())
      fail(node, name, fmt::format("must be an array of {}, got {}", shape, toml_type_name(*node)));
    size_t i = 0;
    for (const auto& row_node : *node->as_array()) {
      const std::string row_name = fmt::format("{}[{}]", name, i++);
      const toml::array* row = row_node.as_array();
      const size_t width = with_servers ? 4 : 3;
      if (!row || row->size() != width) fail(&row_node, row_name, fmt::format("must be {}", shape));
      Measurement m;
      size_t k = 0;
      const auto positive_int = [&](const char* what) {
        const toml::node& item = *row->get(k++);
        const int64_t v = integer(item, fmt::format("{} ({})", row_name, what));
        if (v < 1) fail(&item, row_name, fmt::format("{} must be at least 1, got {}", what, v));
        return v;
      };
      m.ranks = static_cast<int>(
          std::min<int64_t>(positive_int(with_servers ? "workers" : "ranks"), std::numeric_limits<int>::max()));
      if (with_servers) {
        m.servers = static_cast<int>(std::min<int64_t>(positive_int("servers"), std::numeric_limits<int>::max()));
      }
      m.bytes = positive_int("bytes");
      const toml::node& seconds = *row->get(k);
      m.seconds = number(seconds, fmt::format("{} (seconds)", row_name));
      if (!(m.seconds > 0)) fail(&seconds, row_name, fmt::format("seconds must be above 0, got {}", m.seconds));
      out.push_back(m);
    }
    return out;
  }

  // An array of rows [strategy, workers, servers, stages, micro_batches, (tensors,) seconds].
  std::vector<Overhead> overhead_rows(const toml::table& t, const std::string& prefix, const std::string& key) const {
    std::vector<Overhead> out;
    const toml::node* node = t.get(key);
    if (!node) return out;
    const std::string name = join(prefix, key);
    const char* shape = "[strategy, workers, servers, stages, micro_batches, (tensors,) seconds]";
    if (!node->is_array())
      fail(node, name, fmt::format("must be an array of {}, got {}", shape, toml_type_name(*node)));
    size_t i = 0;
    for (const auto& row_node : *node->as_array()) {
      const std::string row_name = fmt::format("{}[{}]", name, i++);
      const toml::array* row = row_node.as_array();
      if (!row || (row->size() != 6 && row->size() != 7) || !row->get(0)->is_string())
        fail(&row_node, row_name, fmt::format("must be {}", shape));
      Overhead o;
      o.strategy = row->get(0)->as_string()->get();
      const auto count = [&](size_t k, const char* what) {
        const int64_t v = integer(*row->get(k), fmt::format("{} ({})", row_name, what));
        if (v < 0 || v > std::numeric_limits<int>::max()) {
          fail(row->get(k), row_name, fmt::format("{} must be at least 0, got {}", what, v));
        }
        return v;
      };
      o.workers = static_cast<int>(count(1, "workers"));
      o.servers = static_cast<int>(count(2, "servers"));
      o.stages = static_cast<int>(count(3, "stages"));
      o.micro_batches = count(4, "micro_batches");
      if (o.workers < 1 || o.stages < 1 || o.micro_batches < 1) {
        fail(&row_node, row_name, "workers, stages and micro_batches must be at least 1");
      }
      const size_t last = row->size() - 1;
      if (last == 6) o.tensors = count(5, "tensors");
      o.seconds = number(*row->get(last), fmt::format("{} (seconds)", row_name));
      if (!(o.seconds >= 0)) {
        fail(row->get(last), row_name, fmt::format("seconds must be at least 0, got {}", o.seconds));
      }
      out.push_back(o);
    }
    return out;
  }

  std::vector<double> numbers(const toml::table& t, const std::string& prefix, const std::string& key) const {
    std::vector<double> out;
    const toml::node* node = t.get(key);
    if (!node) return out;
    const std::string name = join(prefix, key);
    if (!node->is_array()) fail(node, name, fmt::format("must be an array of numbers, got {}", toml_type_name(*node)));
    size_t i = 0;
    for (const auto& item : *node->as_array()) {
      const double v = number(item, fmt::format("{}[{}]", name, i++));
      if (!(v > 0)) fail(&item, fmt::format("{}[{}]", name, i - 1), fmt::format("must be above 0, got {}", v));
      out.push_back(v);
    }
    return out;
  }

  static std::string join(const std::string& prefix, const std::string& key) {
    return prefix.empty() ? key : prefix + "." + key;
  }

 private:
  std::string source_;
};

// ---- TOML out ---------------------------------------------------------------

// A TOML float that reads back as the same double ("1.0", not "1", which is an integer).
std::string number_text(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string numbers_text(const std::vector<double>& values) {
  std::string list;
  for (double v : values) list += (list.empty() ? "" : ", ") + number_text(v);
  return list;
}

// `value` (struct units) as the shortest number in file units (`shown`) that `read`
// turns back into exactly `value`: 30e-6 s is written "30.0", not "29.999999999999996".
std::string exact_text(double value, double shown, double (*read)(double)) {
  for (int digits = 1; digits <= 17; ++digits) {
    const std::string text = fmt::format("{:.{}g}", shown, digits);
    if (read(std::strtod(text.c_str(), nullptr)) == value) return number_text(std::strtod(text.c_str(), nullptr));
  }
  return number_text(shown);
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04X}", c);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

void write_rows(std::string& out, const char* key, const std::vector<Measurement>& rows, bool with_servers) {
  if (rows.empty()) return;
  out += fmt::format("{} = [\n", key);
  for (const auto& m : rows) {
    if (with_servers) {
      out += fmt::format("  [{}, {}, {}, {}],\n", m.ranks, m.servers, m.bytes, number_text(m.seconds));
    } else {
      out += fmt::format("  [{}, {}, {}],\n", m.ranks, m.bytes, number_text(m.seconds));
    }
  }
  out += "]\n";
}

// ---- This machine -----------------------------------------------------------

int machine_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// MemAvailable from /proc/meminfo (bytes); MemTotal when it is missing; 0 when neither.
int64_t machine_available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  int64_t total = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name;
    int64_t kib = 0;
    fields >> name >> kib;
    if (name == "MemAvailable:") return kib * 1024;
    if (name == "MemTotal:") total = kib * 1024;
  }
  return total;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "this machine";
  return name;
}

}  // namespace

double Cluster::allreduce_s(int ranks, int64_t bytes, Transport transport) const {
  return collective_s(*this, transport == Transport::shared_memory ? allreduce_shm : allreduce_tcp, ranks, bytes);
}

double Cluster::reduce_scatter_all_gather_s(int ranks, int64_t bytes, Transport transport) const {
  return collective_s(*this, transport == Transport::shared_memory ? rs_ag_shm : rs_ag_tcp, ranks, bytes);
}

double Cluster::p2p_s(int64_t bytes, bool same_node, int group_ranks) const {
  const Link& link =
      !same_node ? inter
                 : (intra_shm && group_ranks <= kShmP2pMaxRanks && bytes <= kShmP2pMaxBytes ? *intra_shm : intra);
  return link.latency_s + static_cast<double>(std::max<int64_t>(bytes, 0)) / link.bandwidth_Bps;
}

double Cluster::ps_round_s(int workers, int servers, int64_t bytes) const {
  if (workers < 1 || servers < 1 || bytes <= 0) return 0;
  const bool one_node = workers + servers <= processes_per_node;
  const Link& link = one_node ? intra : inter;
  const auto formula = [&](int w, int s) {
    return [&, w, s](double b) { return 2 * link.latency_s + 2.0 * w * b / s / link.bandwidth_Bps; };
  };
  if (ps.empty() || !one_node) return formula(workers, servers)(static_cast<double>(bytes));
  // The nearest measured combination (fewest workers + servers away; ties: more workers,
  // then more servers), scaled by the formula's ratio when it is not this one.
  const Measurement* nearest = &ps.front();
  const auto distance = [&](const Measurement& m) {
    return std::abs(m.ranks - workers) + std::abs(m.servers - servers);
  };
  for (const auto& m : ps) {
    const int d = distance(m), best = distance(*nearest);
    if (d < best || (d == best && std::tie(m.ranks, m.servers) > std::tie(nearest->ranks, nearest->servers))) {
      nearest = &m;
    }
  }
  const int w = nearest->ranks, s = nearest->servers;
  const double t = along_curve(rows_of(ps, w, s), static_cast<double>(bytes), formula(w, s));
  if (w == workers && s == servers) return t;
  return t * formula(workers, servers)(static_cast<double>(bytes)) / formula(w, s)(static_cast<double>(bytes));
}

double Cluster::slowdown(int busy, int threads) const {
  const int k = std::max(busy, 1) * std::max(threads, 1);
  if (contention.empty()) return std::max(1.0, static_cast<double>(k) / std::max(cores_per_node, 1));
  const int n = static_cast<int>(contention.size());
  const double v = k <= n ? contention[k - 1] : contention.back() * k / n;
  return std::max(1.0, v);
}

double Cluster::speed(int rank) const {
  return rank >= 0 && rank < static_cast<int>(process_speeds.size()) ? process_speeds[rank] : 1.0;
}

double Cluster::slowest(int processes) const {
  double s = speed(0);
  for (int r = 1; r < processes; ++r) s = std::min(s, speed(r));
  return s;
}

double Cluster::fastest(int processes) const {
  double s = speed(0);
  for (int r = 1; r < processes; ++r) s = std::max(s, speed(r));
  return s;
}

int64_t Cluster::memory_per_process(int processes) const { return memory_per_node_bytes / std::max(processes, 1); }

std::string Cluster::to_toml() const {
  std::string out =
      "# loom cluster file (docs/planner.md, include/loom/plan/cluster.h): units are the ones in the key names.\n";
  out += "[cluster]\n";
  out += fmt::format("name = {}\n", quoted(name));
  out += fmt::format("nodes = {}\n", nodes);
  out += fmt::format("processes_per_node = {}\n", processes_per_node);
  out += fmt::format("cores_per_node = {}\n", cores_per_node);
  out += fmt::format("memory_per_node_gib = {}\n", number_text(memory_per_node_bytes / kGiB));
  out += fmt::format("process_base_mib = {}\n", number_text(process_base_bytes / kMiB));
  if (!process_speeds.empty()) out += fmt::format("process_speeds = [{}]\n", numbers_text(process_speeds));
  for (const auto& [key, link] : {std::pair<const char*, const Link*>{"intra", &intra},
                                  {"inter", &inter},
                                  {"intra_shm", intra_shm ? &*intra_shm : nullptr}}) {
    if (!link) continue;
    out += fmt::format("\n[links.{}]\n", key);
    out += fmt::format("latency_us = {}\n", exact_text(link->latency_s, link->latency_s * 1e6, us_to_s));
    out += fmt::format("bandwidth_gbs = {}\n", exact_text(link->bandwidth_Bps, link->bandwidth_Bps / 1e9, gbs_to_Bps));
  }
  const bool measured = !measured_on.empty() || !contention.empty() || !allreduce_shm.empty() ||
                        !allreduce_tcp.empty() || !rs_ag_shm.empty() || !rs_ag_tcp.empty() || !ps.empty() ||
                        !overheads.empty();
  if (!measured) return out;
  out += "\n[measured]\n";
  if (!measured_on.empty()) out += fmt::format("on = {}\n", quoted(measured_on));
  if (!contention.empty()) out += fmt::format("contention = [{}]\n", numbers_text(contention));
  write_rows(out, "allreduce_shm", allreduce_shm, false);
  write_rows(out, "allreduce_tcp", allreduce_tcp, false);
  write_rows(out, "reduce_scatter_all_gather_shm", rs_ag_shm, false);
  write_rows(out, "reduce_scatter_all_gather_tcp", rs_ag_tcp, false);
  write_rows(out, "ps", ps, true);
  if (!overheads.empty()) {
    out += "overhead = [\n";
    for (const auto& o : overheads) {
      const std::string tensors = o.tensors > 0 ? fmt::format("{}, ", o.tensors) : "";
      out += fmt::format("  [{}, {}, {}, {}, {}, {}{}],\n", quoted(o.strategy), o.workers, o.servers, o.stages,
                         o.micro_batches, tensors, number_text(o.seconds));
    }
    out += "]\n";
  }
  return out;
}

Cluster Cluster::from_toml(const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& err) {
    const auto& at = err.source().begin;
    LOOM_THROW(DataError, "cluster file {}:{}:{}: {}", source, at.line, at.column, err.description());
  }
  const Reader r(source);
  r.only(root, "", {"cluster", "links", "measured"});
  Cluster c;

  const toml::table& cl = *r.table(root, "", "cluster", true);
  r.only(cl, "cluster",
         {"name", "nodes", "processes_per_node", "cores_per_node", "memory_per_node_gib", "process_base_mib",
          "process_speeds"});
  if (const toml::node* name = cl.get("name")) {
    if (!name->is_string())
      r.fail(name, "cluster.name", fmt::format("must be a string, got {}", toml_type_name(*name)));
    c.name = name->as_string()->get();
  }
  c.nodes = r.integer_at(cl, "cluster", "nodes", true, 1, 1);
  c.processes_per_node = r.integer_at(cl, "cluster", "processes_per_node", true, 1, 1);
  c.cores_per_node = r.integer_at(cl, "cluster", "cores_per_node", true, 1, 1);
  c.memory_per_node_bytes = std::llround(r.number_at(cl, "cluster", "memory_per_node_gib", true, 0, 0, true) * kGiB);
  c.process_base_bytes = std::llround(r.number_at(cl, "cluster", "process_base_mib", false, 0, 0, false) * kMiB);
  c.process_speeds = r.numbers(cl, "cluster", "process_speeds");

  const toml::table& links = *r.table(root, "", "links", true);
  r.only(links, "links", {"intra", "inter", "intra_shm"});
  c.intra = r.link(*r.table(links, "links", "intra", true), "links.intra");
  // One node never crosses the inter link: it may be left out.
  if (const toml::table* inter = r.table(links, "links", "inter", c.nodes > 1)) {
    c.inter = r.link(*inter, "links.inter");
  } else {
    c.inter = c.intra;
  }
  if (const toml::table* shm = r.table(links, "links", "intra_shm", false)) {
    c.intra_shm = r.link(*shm, "links.intra_shm");
  }

  if (const toml::table* m = r.table(root, "", "measured", false)) {
    r.only(*m, "measured",
           {"on", "contention", "allreduce_shm", "allreduce_tcp", "reduce_scatter_all_gather_shm",
            "reduce_scatter_all_gather_tcp", "ps", "overhead"});
    if (const toml::node* on = m->get("on")) {
      if (!on->is_string()) r.fail(on, "measured.on", fmt::format("must be a string, got {}", toml_type_name(*on)));
      c.measured_on = on->as_string()->get();
    }
    c.contention = r.numbers(*m, "measured", "contention");
    c.allreduce_shm = r.table_rows(*m, "measured", "allreduce_shm", false);
    c.allreduce_tcp = r.table_rows(*m, "measured", "allreduce_tcp", false);
    c.rs_ag_shm = r.table_rows(*m, "measured", "reduce_scatter_all_gather_shm", false);
    c.rs_ag_tcp = r.table_rows(*m, "measured", "reduce_scatter_all_gather_tcp", false);
    c.ps = r.table_rows(*m, "measured", "ps", true);
    c.overheads = r.overhead_rows(*m, "measured", "overhead");
  }
  return c;
}

Cluster Cluster::load(const std::string& path) { return from_toml(read_file(path), path); }

Cluster Cluster::this_machine(int processes) {
  Cluster c;
  c.cores_per_node = machine_cores();
  c.name = host_name();
  c.nodes = 1;
  c.processes_per_node = processes > 0 ? processes : c.cores_per_node;
  c.memory_per_node_bytes = machine_available_memory();
  c.process_base_bytes = kAssumedProcessBaseBytes;
  // Assumptions, not measurements (`loom plan --calibrate` measures them): loopback TCP
  // between two processes through Gloo, typical of a small Linux machine: ~30 us per
  // message, ~4 GB/s. One node: the inter link is never crossed; it is set equal.
  c.intra.latency_s = 30e-6;
  c.intra.bandwidth_Bps = 4e9;
  c.inter = c.intra;
  return c;
}

}  // namespace loom::plan
