#include "loom/data/npy_reader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data_files.h"
#include "loom/core/error.h"
#include "loom/data/mapped_file.h"

namespace loom::data {
namespace {

using testing::contains;
using testing::DataFileTest;
using testing::error_of;
using testing::npy_dict;
using testing::npy_file;
using testing::npy_of;
using testing::raw_bytes;
using testing::write_file;

class NpyReader : public DataFileTest {
 protected:
  // The DataError message of read_npy on a file holding `bytes`.
  std::string error_for(const std::string& bytes) {
    const std::string p = path("a.npy");
    write_file(p, bytes);
    return error_of([&] { read_npy(p); });
  }
};

// True when [p, p + bytes) lies inside a mapping of `file` in /proc/self/maps.
bool inside_mapping_of(const void* p, size_t bytes, const std::string& file) {
  std::ifstream maps("/proc/self/maps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    if (line.size() < file.size() || line.compare(line.size() - file.size(), file.size(), file) != 0) continue;
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream in(line);
    in >> std::hex >> lo >> dash >> hi;
    if (addr >= lo && addr + bytes <= hi) return true;
  }
  return false;
}

TEST_F(NpyReader, ReadsFloat32AsAMapOfTheFile) {
  const std::vector<float> v = {0, 1, 2, 3, 4, 5};
  write_file(path("x.npy"), npy_of("<f4", {3, 2}, v));
  const at::Tensor t = read_npy(path("x.npy"));
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(at::equal(t, at::arange(6, at::kFloat).view({3, 2})));
  // No copy: the tensor's bytes are the file's, in a mapping of it.
  EXPECT_TRUE(inside_mapping_of(t.data_ptr(), 6 * sizeof(float), path("x.npy")));
}

TEST_F(NpyReader, TheMapOutlivesEveryHandleButTheTensor) {
  write_file(path("x.npy"), npy_of<int64_t>("<i8", {4}, {7, 8, 9, 10}));
  at::Tensor view;
  {
    const at::Tensor t = read_npy(path("x.npy"));
    view = t.narrow(0, 2, 2);
  }
  EXPECT_TRUE(inside_mapping_of(view.data_ptr(), 16, path("x.npy")));
  EXPECT_EQ(view[1].item<int64_t>(), 10);
}

TEST_F(NpyReader, UnmapsWhenTheLastTensorGoes) {
  write_file(path("x.npy"), npy_of<float>("<f4", {2}, {1, 2}));
  const void* p = nullptr;
  {
    const at::Tensor t = read_npy(path("x.npy"));
    p = t.data_ptr();
    ASSERT_TRUE(inside_mapping_of(p, 8, path("x.npy")));
  }
  EXPECT_FALSE(inside_mapping_of(p, 8, path("x.npy")));
}

TEST_F(NpyReader, Dtypes) {
  write_file(path("f8.npy"), npy_of<double>("<f8", {2}, {1.5, -2.25}));
  write_file(path("i8.npy"), npy_of<int64_t>("<i8", {2}, {-3, 1LL << 40}));
  write_file(path("i4.npy"), npy_of<int32_t>("<i4", {2}, {-3, 70000}));
  write_file(path("i2.npy"), npy_of<int16_t>("<i2", {2}, {-3, 300}));
  write_file(path("i1.npy"), npy_of<int8_t>("|i1", {2}, {-3, 100}));
  write_file(path("u1.npy"), npy_of<uint8_t>("|u1", {2}, {0, 255}));
  write_file(path("b1.npy"), npy_of<uint8_t>("|b1", {2}, {1, 0}));
  write_file(path("f2.npy"), npy_of<uint16_t>("<f2", {2}, {0x3c00, 0xc000}));  // 1.0, -2.0
  write_file(path("eq.npy"), npy_of<float>("=f4", {1}, {4.0f}));
  const auto as_double = [&](const std::string& name) {
    const at::Tensor t = read_npy(path(name)).to(at::kDouble);
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
  };
  EXPECT_EQ(read_npy(path("f8.npy")).scalar_type(), at::kDouble);
  EXPECT_EQ(as_double("f8.npy"), (std::vector<double>{1.5, -2.25}));
  EXPECT_EQ(read_npy(path("i8.npy")).scalar_type(), at::kLong);
  EXPECT_EQ(read_npy(path("i8.npy"))[1].item<int64_t>(), 1LL << 40);
  EXPECT_EQ(read_npy(path("i4.npy")).scalar_type(), at::kInt);
  EXPECT_EQ(as_double("i4.npy"), (std::vector<double>{-3, 70000}));
  EXPECT_EQ(read_npy(path("i2.npy")).scalar_type(), at::kShort);
  EXPECT_EQ(as_double("i2.npy"), (std::vector<double>{-3, 300}));
  EXPECT_EQ(read_npy(path("i1.npy")).scalar_type(), at::kChar);
  EXPECT_EQ(as_double("i1.npy"), (std::vector<double>{-3, 100}));
  EXPECT_EQ(read_npy(path("u1.npy")).scalar_type(), at::kByte);
  EXPECT_EQ(as_double("u1.npy"), (std::vector<double>{0, 255}));
  EXPECT_EQ(read_npy(path("b1.npy")).scalar_type(), at::kBool);
  EXPECT_EQ(as_double("b1.npy"), (std::vector<double>{1, 0}));
  EXPECT_EQ(read_npy(path("f2.npy")).scalar_type(), at::kHalf);
  EXPECT_EQ(as_double("f2.npy"), (std::vector<double>{1, -2}));
  EXPECT_EQ(as_double("eq.npy"), (std::vector<double>{4}));
}

TEST_F(NpyReader, FormatVersions2And3) {
  for (const int major : {2, 3}) {
    const std::string p = path("v" + std::to_string(major) + ".npy");
    write_file(p, npy_of<float>("<f4", {2, 2}, {1, 2, 3, 4}, major));
    EXPECT_TRUE(at::equal(read_npy(p), at::arange(1, 5, at::kFloat).view({2, 2}))) << major;
  }
}

TEST_F(NpyReader, HeaderVariants) {
  // Keys in another order, double quotes, no trailing comma, Python 2 longs.
  write_file(path("a.npy"),
             npy_file("{\"shape\": (2L, 1L), \"fortran_order\": False, \"descr\": \"<f4\"}", raw_bytes<float>({5, 6})));
  EXPECT_EQ(read_npy(path("a.npy")).sizes().vec(), (std::vector<int64_t>{2, 1}));
  // An unaligned data offset (hand-made files): read, by a copy.
  std::string bytes = npy_file(npy_dict("<f4", {2}), raw_bytes<float>({5, 6}));
  bytes.insert(bytes.find('\n'), " ");  // one more header byte
  bytes[8] = static_cast<char>(bytes[8] + 1);
  write_file(path("b.npy"), bytes);
  EXPECT_TRUE(at::equal(read_npy(path("b.npy")), at::tensor({5.0f, 6.0f})));
}

TEST_F(NpyReader, ParsesTheHeader) {
  const std::string bytes = npy_of<int64_t>("<i8", {3, 4, 5}, std::vector<int64_t>(60));
  const NpyHeader h = parse_npy_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "h.npy");
  EXPECT_EQ(h.descr, "<i8");
  EXPECT_EQ(h.dtype, at::kLong);
  EXPECT_FALSE(h.fortran_order);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(h.data_offset, 128u);  // a multiple of 64, as NumPy pads
}

TEST_F(NpyReader, BadMagic) {
  const std::string m = error_for("PK\x03\x04 this is a zip file");
  EXPECT_TRUE(contains(m, path("a.npy") + ": not a NumPy .npy file (bad magic"));
  EXPECT_TRUE(contains(error_for("\x93NUMPZ\x01\x00"), "bad magic"));
}

TEST_F(NpyReader, EmptyOrCutInsideTheMagic) {
  EXPECT_TRUE(contains(error_for(""), path("a.npy") + ": empty file (0 bytes; expected a NumPy .npy file)"));
  EXPECT_TRUE(contains(error_for("\x93NUM"), path("a.npy") + ": truncated: the .npy file ends inside its magic"));
  EXPECT_TRUE(contains(error_for("\x93NUX"), "bad magic"));  // a short file that is not a cut .npy
}

TEST_F(NpyReader, UnsupportedVersion) {
  std::string bytes = npy_of<float>("<f4", {1}, {1});
  bytes[6] = 4;
  EXPECT_TRUE(contains(error_for(bytes), path("a.npy") + ": unsupported .npy format version 4.0"));
}

TEST_F(NpyReader, FortranOrder) {
  EXPECT_TRUE(contains(error_for(npy_file(npy_dict("<f4", {2, 2}, /*fortran=*/true), raw_bytes<float>({1, 2, 3, 4}))),
                       path("a.npy") + ": the array is in Fortran order"));
}

TEST_F(NpyReader, BigEndian) {
  EXPECT_TRUE(
      contains(error_for(npy_of<float>(">f4", {1}, {1})), path("a.npy") + ": big-endian dtype '>f4' is not supported"));
}

TEST_F(NpyReader, UnknownObjectAndStructuredDtypes) {
  EXPECT_TRUE(contains(error_for(npy_of<float>("<c8", {1}, {1, 2})),
                       path("a.npy") + ": unsupported dtype '<c8' (supported: float32, float64"));
  EXPECT_TRUE(contains(error_for(npy_of<uint16_t>("<u2", {1}, {1})), "unsupported dtype '<u2'"));
  EXPECT_TRUE(contains(error_for(npy_of<uint64_t>("|O", {1}, {0})), path("a.npy") + ": object arrays"));
  EXPECT_TRUE(
      contains(error_for(npy_file("{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (1,), }",
                                  std::string(12, '\0'))),
               path("a.npy") + ": structured dtypes"));
}

TEST_F(NpyReader, HeaderThatDoesNotParse) {
  const std::string broken[] = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2}",  // unclosed tuple
      "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }",
      "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }",
      "['descr', '<f4']",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } trailing",
  };
  for (const std::string& dict : broken) {
    EXPECT_TRUE(contains(error_for(npy_file(dict, raw_bytes<float>({1, 2}))),
                         path("a.npy") + ": cannot parse the .npy header "))
        << dict;
  }
  EXPECT_TRUE(contains(error_for(npy_file("{'descr': '<f4', 'fortran_order': False, }", "")),
                       path("a.npy") + ": the .npy header lacks 'shape'"));
}

TEST_F(NpyReader, TruncatedHeader) {
  const std::string bytes = npy_of<float>("<f4", {1}, {1});
  EXPECT_TRUE(contains(error_for(bytes.substr(0, 40)), path("a.npy") + ": truncated: the .npy header is 118 bytes"));
  EXPECT_TRUE(contains(error_for(bytes.substr(0, 9)), "truncated"));
}

TEST_F(NpyReader, TruncatedData) {
  const std::string bytes = npy_of<float>("<f4", {1000, 784}, std::vector<float>(1000 * 784));
  EXPECT_EQ(error_for(bytes.substr(0, bytes.size() - 4000)),
            path("a.npy") +
                ": truncated: header says 1000x784 float32 = 3136000 bytes, file has 3132000 after the "
                "header");
}

TEST_F(NpyReader, BytesAfterTheArray) {
  EXPECT_TRUE(contains(error_for(npy_of<float>("<f4", {2}, {1, 2, 3})),
                       path("a.npy") + ": 4 unexpected bytes after the array (header says 2 float32 = 8 bytes)"));
}

TEST_F(NpyReader, MissingFile) {
  EXPECT_TRUE(contains(error_of([&] { read_npy(path("none.npy")); }),
                       "cannot open " + path("none.npy") + ": No such file or directory"));
  EXPECT_TRUE(contains(error_of([&] { read_npy(dir_); }), "Is a directory"));
}

}  // namespace
}  // namespace loom::data
