// Reads NumPy .npy files (format versions 1.0, 2.0 and 3.0) by memory-mapping them.
//
// Format: the magic "\x93NUMPY", a major and a minor version byte, the header's length
// (little-endian uint16 in 1.0, uint32 in 2.0 and 3.0), then the header: a Python dict
// literal {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 784), } padded with
// spaces and a newline, then the array's bytes in C order.
// Supported dtypes ('descr'): '<f4' '<f8' '<f2' '<i8' '<i4' '<i2' '|i1' '|u1' '|b1' (and
// '=' for '<': this is a little-endian machine). C order only.
//
// Every defect is a loom::DataError whose one-line message starts with the file's path
// and names the cause: bad magic, unsupported version, a header that does not parse,
// Fortran order, a big-endian, object, structured or unknown dtype, a 0-d array, a file
// shorter (truncated) or longer than the header says.
// Thread-safety: reentrant.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loom::data {

struct NpyHeader {
  std::string descr;           // e.g. "<f4"
  at::ScalarType dtype{};      // descr as a torch dtype
  bool fortran_order = false;  // always false once parsed: Fortran order is rejected
  std::vector<int64_t> shape;  // as stored, outermost first
  size_t data_offset = 0;      // where the array's bytes start in the file
};

// Parses and checks the header at the start of `bytes` (the file's first `size` bytes;
// `path` is for messages). Does not look at the array's bytes.
NpyHeader parse_npy_header(const uint8_t* bytes, size_t size, const std::string& path);

// "float32", "uint8", ...: the NumPy name of a supported dtype, for messages.
std::string numpy_dtype_name(at::ScalarType dtype);

// The array in `path`, memory-mapped (no copy; read-only; mapped_file.h), with the
// header's shape and dtype. Checks that the file holds exactly the bytes the header
// promises; reads none of them.
at::Tensor read_npy(const std::string& path);

}  // namespace loom::data
