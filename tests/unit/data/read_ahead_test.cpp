// data::prefetch, data::prefetch_all and data::page_coverage on a memory-mapped npy: set.
// Whether the kernel read a page is asked with mincore(2), which reports the page cache
// for a file mapping; the file's pages are dropped from the cache first (fdatasync +
// posix_fadvise DONTNEED), so these tests need a scratch directory on a real disk (they
// skip on tmpfs, where pages cannot be dropped).
#include <ATen/ATen.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "data_files.h"
#include "loom/data/dataset.h"

namespace loom::data {
namespace {

using testing::DataFileTest;
using testing::npy_of;
using testing::write_file;

constexpr long kTmpfsMagic = 0x01021994;

class ReadAheadTest : public DataFileTest {
 protected:
  // npy:x.npy,y.npy with `rows` rows of `row_floats` float32 each, its pages not cached.
  Dataset cold_set(int64_t rows, int64_t row_floats) {
    std::vector<float> x(static_cast<size_t>(rows * row_floats), 1.0f);
    std::vector<int64_t> y(static_cast<size_t>(rows), 0);
    write_file(path("x.npy"), npy_of<float>("<f4", {rows, row_floats}, x));
    write_file(path("y.npy"), npy_of<int64_t>("<i8", {rows}, y));
    drop_from_cache(path("x.npy"));
    DataOptions options;
    options.name = "npy:" + path("x.npy") + "," + path("y.npy");
    return load_dataset(options, Split::train);
  }

  static void drop_from_cache(const std::string& file) {
    const int fd = ::open(file.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << file;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }

  bool on_tmpfs() const {
    struct statfs fs {};
    return ::statfs(dir_.c_str(), &fs) == 0 && fs.f_type == kTmpfsMagic;
  }
};

// How many of the pages under row `i`'s bytes are in the page cache; `total`: how many
// pages it lies on (a 64 KiB row at offset 128 lies on 17).
int64_t cached_pages(const Dataset& set, int64_t i, int64_t* total = nullptr) {
  static const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto row_bytes = static_cast<uintptr_t>(set.inputs.numel() / set.size() * set.inputs.element_size());
  const uintptr_t begin = reinterpret_cast<uintptr_t>(set.inputs.data_ptr()) + static_cast<uintptr_t>(i) * row_bytes;
  const uintptr_t first = begin & ~(page - 1);
  const size_t pages = (begin + row_bytes - first + page - 1) / page;
  std::vector<unsigned char> in(pages);
  if (total) *total = static_cast<int64_t>(pages);
  if (::mincore(reinterpret_cast<void*>(first), begin + row_bytes - first, in.data()) != 0) return -1;
  int64_t n = 0;
  for (const unsigned char c : in) n += c & 1;
  return n;
}

bool row_cached(const Dataset& set, int64_t i) {
  int64_t total = 0;
  return cached_pages(set, i, &total) == total;
}

// Waits up to 5 s for `done` (the reads are asynchronous).
template <class F>
bool eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST_F(ReadAheadTest, PrefetchReadsTheAskedRowsAndNotTheOthers) {
  if (on_tmpfs()) GTEST_SKIP() << dir_ << " is on tmpfs: its pages cannot be dropped";
  // Rows of 64 KiB (17 pages each): row 10 and row 200 are far apart.
  const Dataset set = cold_set(256, 16384);
  ASSERT_TRUE(set.memory_mapped);
  ASSERT_EQ(cached_pages(set, 10), 0) << "the file's pages were not dropped from the cache";
  prefetch(set, {10});
  EXPECT_TRUE(eventually([&] { return row_cached(set, 10); })) << cached_pages(set, 10);
  EXPECT_EQ(cached_pages(set, 200), 0) << "prefetch of row 10 read row 200 too";
}

TEST_F(ReadAheadTest, PrefetchAllReadsEveryRowOfAFileLargerThanOneRequest) {
  if (on_tmpfs()) GTEST_SKIP() << dir_ << " is on tmpfs: its pages cannot be dropped";
  // 24 MiB: more than one 8 MiB request (one WILLNEED over the whole range reads only
  // its first 8 MiB on this kernel).
  const Dataset set = cold_set(384, 16384);
  ASSERT_EQ(cached_pages(set, 383), 0) << "the file's pages were not dropped from the cache";
  prefetch_all(set);
  EXPECT_TRUE(eventually([&] { return row_cached(set, 0) && row_cached(set, 383); }))
      << "first row " << cached_pages(set, 0) << " pages, last row " << cached_pages(set, 383);
}

TEST_F(ReadAheadTest, PageCoverageCountsThePagesUnderTheRows) {
  // Rows of 1024 floats (4 KiB) starting at offset 128: each row lies on two pages, and
  // rows i and i+1 share one. 64 rows lie on 65 pages.
  const Dataset set = cold_set(64, 1024);
  EXPECT_DOUBLE_EQ(page_coverage(set, {}), 0.0);
  EXPECT_DOUBLE_EQ(page_coverage(set, {0}), 2.0 / 65);
  EXPECT_DOUBLE_EQ(page_coverage(set, {0, 1}), 3.0 / 65);
  EXPECT_DOUBLE_EQ(page_coverage(set, {0, 0, 2}), 4.0 / 65);  // repeats count once
  std::vector<int64_t> all(64);
  for (int64_t i = 0; i < 64; ++i) all[static_cast<size_t>(i)] = i;
  EXPECT_DOUBLE_EQ(page_coverage(set, all), 1.0);
  EXPECT_DOUBLE_EQ(page_coverage(set, {-1, 64}), 0.0);  // out of range: ignored
}

TEST_F(ReadAheadTest, ASetInMemoryHasNoPagesToReadAhead) {
  Dataset set;
  set.inputs = at::ones({4, 3});
  set.targets = at::zeros({4}, at::kLong);
  EXPECT_DOUBLE_EQ(page_coverage(set, {0, 1, 2, 3}), 0.0);
  prefetch(set, {0});  // nothing to do, and no crash
  prefetch_all(set);
}

}  // namespace
}  // namespace loom::data
