// The recovery code format itself (src/format/recovery_code.cpp), exhaustively for single typos.
#include "veilfs/format/recovery_code.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>

#include "veilfs/format/constants.hpp"

namespace veil::format {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

std::string text_of(const SecretBytes& code) { return std::string(code.view()); }

// Index in the text of symbol `s` (0..62), skipping dashes.
size_t text_index(size_t s) { return s + s / kRecoveryGroupChars; }

std::vector<unsigned> groups_reported(const std::string& text) {
  try {
    decode_recovery_code(text);
  } catch (const RecoveryCodeError& e) {
    return e.bad_groups();
  }
  ADD_FAILURE() << "a damaged code was accepted";
  return {};
}

TEST(RecoveryCode, RoundTripsRandomKeysInTheDocumentedShape) {
  for (int i = 0; i < 200; ++i) {
    SecretBytes key = SecretBytes::random(kMasterKeySize);
    std::string text = text_of(encode_recovery_code(key));
    ASSERT_EQ(text.size(), kRecoveryCodeTextSize);
    for (size_t g = 1; g < kRecoveryGroups; ++g) EXPECT_EQ(text[g * 8 - 1], '-');
    EXPECT_TRUE(decode_recovery_code(text).equals(key.span()));
  }
}

TEST(RecoveryCode, EverySingleSubstitutionIsCaughtInTheRightGroup) {
  SecretBytes key = SecretBytes::random(kMasterKeySize);
  const std::string text = text_of(encode_recovery_code(key));
  for (size_t s = 0; s < kRecoveryCodeSymbols; ++s) {
    for (char c : kAlphabet) {
      std::string bad = text;
      if (bad[text_index(s)] == c) continue;
      bad[text_index(s)] = c;
      EXPECT_EQ(groups_reported(bad), std::vector<unsigned>{static_cast<unsigned>(s / kRecoveryGroupChars + 1)})
          << "symbol " << s;
    }
  }
}

TEST(RecoveryCode, EveryAdjacentSwapInsideAGroupIsCaught) {
  for (int round = 0; round < 20; ++round) {
    const std::string text = text_of(encode_recovery_code(SecretBytes::random(kMasterKeySize)));
    for (size_t s = 0; s + 1 < kRecoveryCodeSymbols; ++s) {
      if ((s + 1) % kRecoveryGroupChars == 0) continue;  // across a dash: two groups, each caught anyway
      std::string bad = text;
      std::swap(bad[text_index(s)], bad[text_index(s + 1)]);
      if (bad == text) continue;
      EXPECT_EQ(groups_reported(bad), std::vector<unsigned>{static_cast<unsigned>(s / kRecoveryGroupChars + 1)});
    }
  }
}

TEST(RecoveryCode, SwappedGroupsAreCaught) {
  const std::string text = text_of(encode_recovery_code(SecretBytes::random(kMasterKeySize)));
  std::string bad = text;
  std::swap_ranges(bad.begin(), bad.begin() + 7, bad.begin() + 8);
  EXPECT_EQ(groups_reported(bad), (std::vector<unsigned>{1, 2}));
}

TEST(RecoveryCode, AcceptsLowerCaseMissingDashesAndConfusableLetters) {
  SecretBytes key = SecretBytes::random(kMasterKeySize);
  std::string text = text_of(encode_recovery_code(key));
  std::string loose;
  for (char c : text) {
    if (c == '-') continue;
    if (c == '0')
      c = 'o';
    else if (c == '1')
      c = 'l';
    loose += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  EXPECT_TRUE(decode_recovery_code(" " + loose + "\n").equals(key.span()));
}

TEST(RecoveryCode, WrongLengthAndForeignCharactersAreRejectedWithoutEchoingTheCode) {
  const std::string text = text_of(encode_recovery_code(SecretBytes::random(kMasterKeySize)));
  for (const std::string& bad : {text.substr(0, text.size() - 1), text + "A", std::string(), text.substr(0, 40)}) {
    try {
      decode_recovery_code(bad);
      ADD_FAILURE() << "accepted a code of the wrong length";
    } catch (const RecoveryCodeError& e) {
      EXPECT_NE(std::string(e.what()).find("expected 63"), std::string::npos) << e.what();
    }
  }
  std::string foreign = text;
  foreign[9] = 'U';
  EXPECT_EQ(groups_reported(foreign), std::vector<unsigned>{2});
  try {
    decode_recovery_code(foreign);
  } catch (const RecoveryCodeError& e) {
    EXPECT_EQ(std::string(e.what()).find(text.substr(8, 7)), std::string::npos);
  }
}

TEST(RecoveryCode, SeveralTyposInOneGroupAreCaughtByTheWholeCodeChecksum) {
  // Two-symbol changes in group 1: 31 of the 1023 fool its check symbol, and the 14-bit checksum must catch
  // them. A fixed key keeps the test deterministic (a random one would slip through with probability 31/2^14).
  std::array<uint8_t, kMasterKeySize> fixed{};
  for (size_t i = 0; i < fixed.size(); ++i) fixed[i] = static_cast<uint8_t>(i * 37 + 11);
  SecretBytes key{std::span<const uint8_t>(fixed)};
  const std::string text = text_of(encode_recovery_code(key));
  int caught_by_checksum = 0;
  for (char a : kAlphabet)
    for (char b : kAlphabet) {
      std::string bad = text;
      bad[0] = a;
      bad[1] = b;
      if (bad == text) continue;
      try {
        decode_recovery_code(bad);
        ADD_FAILURE() << "accepted a code with two typos";
      } catch (const RecoveryCodeError& e) {
        if (e.bad_groups().empty()) ++caught_by_checksum;
      }
    }
  EXPECT_EQ(caught_by_checksum, 31);
}

}  // namespace
}  // namespace veil::format
