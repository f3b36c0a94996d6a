#include "loom/data/npy_reader.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <cctype>
#include <cstring>
#include <limits>
#include <optional>

#include "loom/core/error.h"
#include "loom/data/mapped_file.h"

namespace loom::data {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr size_t kMaxHeaderChars = 120;  // of a header quoted in an error

// A parsed value of the header's dict: a string, a bool, or a tuple of integers. Lists
// (structured dtypes) are recognised only to be rejected.
struct Value {
  enum class Kind { string, boolean, tuple, list } kind = Kind::string;
  std::string text;
  bool flag = false;
  std::vector<int64_t> ints;
};

// A recursive-descent parser for the small part of Python's literal syntax that .npy
// headers use. Throws DataError naming the file on anything else.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  std::vector<std::pair<std::string, Value>> dict() {
    std::vector<std::pair<std::string, Value>> entries;
    expect('{');
    while (!eat('}')) {
      std::string key = string_literal();
      expect(':');
      entries.emplace_back(std::move(key), value());
      if (!eat(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (i_ != s_.size()) fail("text after the closing '}'");
    return entries;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::string shown = s_.substr(0, kMaxHeaderChars);
    while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.back()))) shown.pop_back();
    for (char& c : shown) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    LOOM_THROW(DataError, "{}: cannot parse the .npy header {}{}: {} at character {}", path_, shown,
               s_.size() > kMaxHeaderChars ? "..." : "", what, i_);
  }

  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip_space();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(fmt::format("expected '{}'", c));
  }

  std::string string_literal() {
    skip_space();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a quoted string");
    const char quote = s_[i_++];
    const size_t end = s_.find(quote, i_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    return out;
  }

  int64_t integer() {
    skip_space();
    const size_t start = i_;
    uint64_t v = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      const auto digit = static_cast<uint64_t>(s_[i_] - '0');
      if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - digit) / 10) fail("dimension too large");
      v = v * 10 + digit;
      ++i_;
    }
    if (i_ == start) fail("expected a non-negative integer");
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 long
    return static_cast<int64_t>(v);
  }

  Value value() {
    skip_space();
    Value v;
    if (i_ >= s_.size()) fail("expected a value");
    const char c = s_[i_];
    if (c == '\'' || c == '"') {
      v.kind = Value::Kind::string;
      v.text = string_literal();
    } else if (s_.compare(i_, 4, "True") == 0 || s_.compare(i_, 5, "False") == 0) {
      v.kind = Value::Kind::boolean;
      v.flag = s_[i_] == 'T';
      i_ += v.flag ? 4 : 5;
    } else if (c == '(') {
      v.kind = Value::Kind::tuple;
      ++i_;
      while (!eat(')')) {
        v.ints.push_back(integer());
        if (!eat(',')) {
          expect(')');
          break;
        }
      }
    } else if (c == '[') {
      v.kind = Value::Kind::list;
      // Skip to the matching bracket; the caller rejects the value.
      int depth = 0;
      for (; i_ < s_.size(); ++i_) {
        if (s_[i_] == '[') ++depth;
        if (s_[i_] == ']' && --depth == 0) break;
      }
      if (i_ >= s_.size()) fail("unterminated list");
      ++i_;
    } else {
      fail("expected a string, True, False or a tuple");
    }
    return v;
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

struct DtypeEntry {
  char code;
  size_t size;
  at::ScalarType dtype;
  const char* name;
};

constexpr DtypeEntry kDtypes[] = {
    {'f', 4, at::kFloat, "float32"}, {'f', 8, at::kDouble, "float64"}, {'f', 2, at::kHalf, "float16"},
    {'i', 8, at::kLong, "int64"},    {'i', 4, at::kInt, "int32"},      {'i', 2, at::kShort, "int16"},
    {'i', 1, at::kChar, "int8"},     {'u', 1, at::kByte, "uint8"},     {'b', 1, at::kBool, "bool"},
};

std::string supported_dtypes() {
  std::vector<std::string> names;
  for (const auto& e : kDtypes) names.emplace_back(e.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

at::ScalarType parse_descr(const std::string& descr, const std::string& path) {
  LOOM_CHECK(descr.find('O') == std::string::npos, DataError,
             "{}: object arrays (dtype '{}') are not supported: save a numeric array", path, descr);
  std::optional<DtypeEntry> found;
  if (descr.size() >= 3) {
    const char order = descr[0];
    const char code = descr[1];
    size_t size = 0;
    bool digits = true;
    for (size_t k = 2; k < descr.size(); ++k) {
      if (!std::isdigit(static_cast<unsigned char>(descr[k]))) digits = false;
    }
    if (digits && descr.size() <= 4) size = static_cast<size_t>(std::stoul(descr.substr(2)));
    const bool order_ok = std::strchr("<|>=", order) != nullptr;
    if (order_ok && size > 1 && order == '>') {
      LOOM_THROW(DataError, "{}: big-endian dtype '{}' is not supported: convert it with astype('<{}{}')", path, descr,
                 code, size);
    }
    if (order_ok && (size == 1 || order != '|')) {
      for (const auto& e : kDtypes) {
        if (e.code == code && e.size == size) found = e;
      }
    }
  }
  LOOM_CHECK(found.has_value(), DataError, "{}: unsupported dtype '{}' (supported: {})", path, descr,
             supported_dtypes());
  return found->dtype;
}

uint32_t little_endian(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  for (size_t k = n; k-- > 0;) v = (v << 8) | p[k];
  return v;
}

}  // namespace

std::string numpy_dtype_name(at::ScalarType dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e.name;
  }
  return std::string(c10::toString(dtype));
}

NpyHeader parse_npy_header(const uint8_t* bytes, size_t size, const std::string& path) {
  LOOM_CHECK(size > 0, DataError, "{}: empty file (0 bytes; expected a NumPy .npy file)", path);
  LOOM_CHECK(size >= kMagicSize || std::memcmp(bytes, kMagic, size) != 0, DataError,
             "{}: truncated: the .npy file ends inside its magic string ({} bytes)", path, size);
  LOOM_CHECK(size >= kMagicSize && std::memcmp(bytes, kMagic, kMagicSize) == 0, DataError,
             "{}: not a NumPy .npy file (bad magic: it does not start with \\x93NUMPY)", path);
  LOOM_CHECK(size >= kMagicSize + 2, DataError, "{}: truncated: the .npy file ends inside its version", path);
  const int major = bytes[kMagicSize];
  const int minor = bytes[kMagicSize + 1];
  LOOM_CHECK(major >= 1 && major <= 3 && minor == 0, DataError,
             "{}: unsupported .npy format version {}.{} (1.0, 2.0 and 3.0 are supported)", path, major, minor);
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicSize + 2 + length_bytes;
  LOOM_CHECK(size >= prefix, DataError, "{}: truncated: the .npy file ends inside its header length", path);
  const size_t header_len = little_endian(bytes + kMagicSize + 2, length_bytes);
  LOOM_CHECK(size - prefix >= header_len, DataError,
             "{}: truncated: the .npy header is {} bytes long, but the file has {} bytes after its prefix", path,
             header_len, size - prefix);

  const std::string text(reinterpret_cast<const char*>(bytes + prefix), header_len);
  NpyHeader h;
  h.data_offset = prefix + header_len;
  bool have_descr = false, have_order = false, have_shape = false;
  for (auto& [key, value] : HeaderParser(text, path).dict()) {
    if (key == "descr") {
      LOOM_CHECK(value.kind != Value::Kind::list, DataError,
                 "{}: structured dtypes (a list as 'descr') are not supported: save a plain numeric array", path);
      LOOM_CHECK(value.kind == Value::Kind::string, DataError, "{}: the .npy header's 'descr' is not a string", path);
      h.descr = value.text;
      have_descr = true;
    } else if (key == "fortran_order") {
      LOOM_CHECK(value.kind == Value::Kind::boolean, DataError,
                 "{}: the .npy header's 'fortran_order' is not True or False", path);
      h.fortran_order = value.flag;
      have_order = true;
    } else if (key == "shape") {
      LOOM_CHECK(value.kind == Value::Kind::tuple, DataError, "{}: the .npy header's 'shape' is not a tuple", path);
      h.shape = value.ints;
      have_shape = true;
    }
  }
  LOOM_CHECK(have_descr && have_order && have_shape, DataError,
             "{}: the .npy header lacks '{}' (it needs 'descr', 'fortran_order' and 'shape')", path,
             !have_descr   ? "descr"
             : !have_order ? "fortran_order"
                           : "shape");
  LOOM_CHECK(!h.fortran_order, DataError,
             "{}: the array is in Fortran order: save it in C order (numpy.ascontiguousarray(a))", path);
  h.dtype = parse_descr(h.descr, path);
  return h;
}

at::Tensor read_npy(const std::string& path) {
  const std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const NpyHeader h = parse_npy_header(file->data(), file->size(), path);
  const size_t itemsize = c10::elementSize(h.dtype);
  // The byte count the header promises, refusing one that overflows.
  uint64_t bytes = itemsize;
  bool overflow = false;
  for (const int64_t d : h.shape) {
    const auto n = static_cast<uint64_t>(d);
    if (n != 0 && bytes > std::numeric_limits<uint64_t>::max() / n) overflow = true;
    bytes *= n;
  }
  LOOM_CHECK(!overflow, DataError, "{}: implausible shape ({}) in the .npy header", path, fmt::join(h.shape, ", "));
  const std::string shape_text = h.shape.empty() ? std::string("()") : fmt::format("{}", fmt::join(h.shape, "x"));
  const size_t have = file->size() - h.data_offset;
  LOOM_CHECK(have >= bytes, DataError, "{}: truncated: header says {} {} = {} bytes, file has {} after the header",
             path, shape_text, numpy_dtype_name(h.dtype), bytes, have);
  LOOM_CHECK(have == bytes, DataError, "{}: {} unexpected bytes after the array (header says {} {} = {} bytes)", path,
             have - bytes, shape_text, numpy_dtype_name(h.dtype), bytes);
  return mapped_tensor(file, h.data_offset, h.shape, h.dtype);
}

}  // namespace loom::data
