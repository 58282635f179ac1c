// File header: 20 bytes, version, zero reserved bytes, random file ID.
#include "veilfs/format/file_header.hpp"

#include <gtest/gtest.h>

#include "veilfs/util/error.hpp"

namespace veil::format {
namespace {

TEST(FileHeader, RoundTripsAndIdsAreRandom) {
  auto a = FileHeader::fresh(), b = FileHeader::fresh();
  EXPECT_NE(a.id, b.id);
  auto bytes = a.serialize();
  EXPECT_EQ(bytes.size(), kFileHeaderSize);
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes[1], 0);
  auto p = FileHeader::parse(bytes);
  EXPECT_EQ(p.id, a.id);
  EXPECT_EQ(p.version, kFileHeaderVersion);
}

TEST(FileHeader, MalformedHeadersAreCorrupt) {
  auto bytes = FileHeader::fresh().serialize();
  for (size_t i : {0, 1, 2, 3}) {
    auto t = bytes;
    t[i] ^= 0x40;
    try {
      FileHeader::parse(t);
      ADD_FAILURE() << "accepted a header with byte " << i << " changed";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Corrupt);
    }
  }
  EXPECT_THROW(FileHeader::parse(std::span(bytes).first(19)), Error);
}

}  // namespace
}  // namespace veil::format
