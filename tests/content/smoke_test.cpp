#include <fcntl.h>
#include <gtest/gtest.h>

#include "veilfs/content/content_file.hpp"
#include "veilfs/crypto/random.hpp"

using namespace veil;

TEST(ContentSmoke, RoundTrip) {
  auto cipher = std::make_shared<ContentCipher>(CipherId::Aes256Gcm, 4096, SecretBytes::random(32));
  char path[] = "/tmp/veilfs-smokeXXXXXX";
  int fd = mkstemp(path);
  unlink(path);
  ContentFile f(cipher, UniqueFd(fd));
  std::vector<uint8_t> data(10000);
  random_fill(data);
  f.write(0, data);
  EXPECT_EQ(f.size(), data.size());
  std::vector<uint8_t> back(data.size());
  EXPECT_EQ(f.read(0, back), data.size());
  EXPECT_EQ(back, data);
}
