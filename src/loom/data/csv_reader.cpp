#include "loom/data/csv_reader.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <string_view>

#include "loom/core/error.h"
#include "loom/data/mapped_file.h"

namespace loom::data {

namespace {

constexpr size_t kMaxShown = 40;  // characters of a bad field quoted in an error

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string shown(std::string_view s) {
  return s.size() <= kMaxShown ? std::string(s) : std::string(s.substr(0, kMaxShown)) + "...";
}

bool parse_float(std::string_view s, float& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  // Out of float range is still a number: from_chars leaves `out` alone, so saturate.
  if (ec == std::errc::result_out_of_range && end == s.data() + s.size()) {
    out = s.front() == '-' ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
    return true;
  }
  return ec == std::errc() && end == s.data() + s.size();
}

// Walks the lines of a buffer, numbering them from 1 and skipping blank ones.
class Lines {
 public:
  Lines(const char* begin, const char* end) : p_(begin), end_(end) {}

  // The next non-blank line (without its newline), or false at the end.
  bool next(std::string_view& line) {
    while (p_ < end_) {
      const char* nl = static_cast<const char*>(std::memchr(p_, '\n', static_cast<size_t>(end_ - p_)));
      const char* stop = nl ? nl : end_;
      line = std::string_view(p_, static_cast<size_t>(stop - p_));
      p_ = nl ? nl + 1 : end_;
      ++number_;
      if (!trim(line).empty()) return true;
    }
    return false;
  }
  size_t number() const { return number_; }

 private:
  const char* p_;
  const char* end_;
  size_t number_ = 0;
};

}  // namespace

CsvTable read_csv(const std::string& path, const std::string& target_column) {
  const auto file = MappedFile::open(path);
  const char* begin = reinterpret_cast<const char*>(file->data());
  Lines lines(begin, begin + file->size());

  std::string_view line;
  LOOM_CHECK(lines.next(line), DataError, "{}: empty file (expected a header line of column names)", path);
  const size_t header_line = lines.number();
  std::vector<std::string> columns;
  for (size_t start = 0;;) {
    const size_t comma = line.find(',', start);
    const std::string_view name = trim(line.substr(start, comma == std::string_view::npos ? line.npos : comma - start));
    LOOM_CHECK(name.empty() || (name.front() != '"' && name.front() != '\''), DataError,
               "{}:{}: quoted column names are not supported ({})", path, header_line, shown(name));
    LOOM_CHECK(!name.empty(), DataError,
               "{}:{}: column {} has no name in the header line (a pandas index? write with to_csv(index=False))", path,
               header_line, columns.size() + 1);
    for (const auto& c : columns) {
      LOOM_CHECK(c != name, DataError, "{}:{}: the column name '{}' appears twice in the header line", path,
                 header_line, c);
    }
    columns.emplace_back(name);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  const size_t width = columns.size();
  LOOM_CHECK(width >= 2, DataError, "{}:{}: a single column '{}': the inputs need at least one more", path, header_line,
             columns[0]);
  size_t target = width - 1;
  if (!target_column.empty()) {
    target = width;
    for (size_t k = 0; k < width; ++k) {
      if (columns[k] == target_column) target = k;
    }
    LOOM_CHECK(target < width, DataError, "{}: no column named '{}' for the targets (columns: {})", path, target_column,
               fmt::join(columns, ", "));
  }

  std::vector<float> inputs;
  std::vector<float> targets;
  // A guess at the row count from the header line's length, to limit regrowth.
  const size_t guess = file->size() / (line.size() + 1) + 1;
  inputs.reserve(guess * (width - 1));
  targets.reserve(guess);
  while (lines.next(line)) {
    const auto fields = static_cast<size_t>(std::count(line.begin(), line.end(), ',')) + 1;
    LOOM_CHECK(fields == width, DataError, "{}:{}: {} values, but the header has {} columns", path, lines.number(),
               fields, width);
    size_t column = 0;
    size_t start = 0;
    for (;;) {
      const size_t comma = line.find(',', start);
      const std::string_view field = line.substr(start, comma == std::string_view::npos ? line.npos : comma - start);
      float v = 0;
      LOOM_CHECK(parse_float(trim(field), v), DataError, "{}:{}: column '{}' holds '{}', not a number", path,
                 lines.number(), columns[column], shown(trim(field)));
      (column == target ? targets : inputs).push_back(v);
      ++column;
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
  }
  const auto n = static_cast<int64_t>(targets.size());
  LOOM_CHECK(n > 0, DataError, "{}: no data rows after the header line", path);

  CsvTable table;
  const auto f = at::TensorOptions().dtype(at::kFloat);
  table.inputs = at::empty({n, static_cast<int64_t>(width - 1)}, f);
  std::memcpy(table.inputs.data_ptr<float>(), inputs.data(), inputs.size() * sizeof(float));
  table.targets = at::empty({n}, f);
  std::memcpy(table.targets.data_ptr<float>(), targets.data(), targets.size() * sizeof(float));
  for (size_t k = 0; k < width; ++k) {
    if (k != target) table.features.push_back(columns[k]);
  }
  table.target = columns[target];
  return table;
}

}  // namespace loom::data
