// Reads a numeric CSV file: a header line of column names, then one row per sample.
//
// Format: fields separated by ',' (spaces around a field are ignored; lines may end in
// "\r\n"; blank lines are skipped); no quoting. Every field of a data row is a number
// as std::from_chars reads it (also "nan", "inf"; a leading '+' is allowed). The target
// column is chosen by its header name, or is the last column; every other column is an
// input feature, in file order.
// Result: inputs float32 [N, F], targets float32 [N], in memory (the file is read once).
// Errors: loom::DataError starting with "PATH:LINE:" (or "PATH:" for the whole file):
// an empty file, a header without data rows, an unnamed or repeated column name, a
// single column, an unknown target column (listing the columns), a row with the wrong
// number of fields, a field that is not a number (naming the column).
// Thread-safety: reentrant.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace loom::data {

struct CsvTable {
  at::Tensor inputs;                  // float32 [N, F]
  at::Tensor targets;                 // float32 [N]
  std::vector<std::string> features;  // the F input columns' names
  std::string target;                 // the target column's name
};

// `target_column` empty: the last column.
CsvTable read_csv(const std::string& path, const std::string& target_column);

}  // namespace loom::data
