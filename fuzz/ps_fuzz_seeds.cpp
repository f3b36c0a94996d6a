// Writes the seed corpus for ps_decoder_fuzz: valid headers of every op and dtype (some
// followed by their payload bytes), so the fuzzer starts from inputs that pass the magic
// and version checks. Generated from encode_header, so the seeds follow the format.
//   ps_fuzz_seeds DIR
#include <cstdio>
#include <string>
#include <vector>

#include "loom/ps/protocol.h"

namespace {

using loom::ps::DType;
using loom::ps::Header;
using loom::ps::Op;

bool write_seed(const std::string& dir, int index, const Header& h, bool with_payload) {
  std::vector<uint8_t> bytes(loom::ps::kHeaderBytes);
  loom::ps::encode_header(h, bytes.data());
  if (with_payload) bytes.resize(bytes.size() + h.payload_bytes, 0x5a);
  const std::string path = dir + "/seed-" + std::to_string(index);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int index = 0;
  for (int op = 1; op <= static_cast<int>(Op::command_ack); ++op) {
    for (int dtype = 0; dtype <= static_cast<int>(DType::u8); ++dtype) {
      Header h;
      h.op = static_cast<Op>(op);
      h.dtype = static_cast<DType>(dtype);
      h.worker = static_cast<uint32_t>(op);
      h.key = static_cast<uint64_t>(dtype) * 3;
      h.seq = static_cast<uint64_t>(index);
      h.clock = op - 5;
      h.weight = 0.5;
      if (h.dtype == DType::none) {
        h.payload_bytes = static_cast<uint64_t>(op);
      } else {
        h.ndim = static_cast<uint8_t>(1 + (op + dtype) % loom::ps::kMaxDims);
        for (int i = 0; i < h.ndim; ++i) h.shape[i] = 1 + (i % 2);
        h.payload_bytes = loom::ps::tensor_bytes(h);
      }
      if (!write_seed(dir, index++, h, (op + dtype) % 2 == 0)) {
        std::fprintf(stderr, "ps_fuzz_seeds: cannot write to %s\n", dir.c_str());
        return 1;
      }
    }
  }
  std::printf("ps_fuzz_seeds: %d seeds in %s\n", index, dir.c_str());
  return 0;
}
