#include "veilfs/reverse/excludes.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "veilfs/util/error.hpp"

namespace veil::reverse {

namespace {

// Whether `text` from t on matches `pat` from p on. Memoised over (p, t): patterns and paths are short, and the
// table keeps runs of stars from going exponential.
class Matcher {
 public:
  Matcher(std::string_view pat, std::string_view text)
      : pat_(pat), text_(text), memo_((pat.size() + 1) * (text.size() + 1), -1) {}
  bool run() { return match(0, 0); }

 private:
  bool match(size_t p, size_t t) {
    int8_t& m = memo_[p * (text_.size() + 1) + t];
    if (m < 0) m = compute(p, t) ? 1 : 0;
    return m == 1;
  }
  bool compute(size_t p, size_t t) {
    if (p == pat_.size()) return t == text_.size();
    const char c = pat_[p];
    if (c == '*' && p + 1 < pat_.size() && pat_[p + 1] == '*') {
      const bool slash_after = p + 2 < pat_.size() && pat_[p + 2] == '/';
      const bool at_start = p == 0 || pat_[p - 1] == '/';
      if (at_start && slash_after) {  // "**/": zero or more whole directories
        for (size_t i = t; i <= text_.size(); ++i)
          if ((i == t || text_[i - 1] == '/') && match(p + 3, i)) return true;
        return false;
      }
      if (at_start && p + 2 == pat_.size()) return t < text_.size();  // "x/**": anything inside
      return match(p + 1, t);                                         // "**" within a name is "*"
    }
    if (c == '*') {
      for (size_t i = t;; ++i) {
        if (match(p + 1, i)) return true;
        if (i == text_.size() || text_[i] == '/') return false;
      }
    }
    if (t == text_.size()) return false;
    if (c == '?') return text_[t] != '/' && match(p + 1, t + 1);
    if (c == '[') {
      const size_t close = pat_.find(']', p + 2);  // "[]...]" takes a leading ']' literally
      const bool negate = pat_[p + 1] == '!' || pat_[p + 1] == '^';
      bool in = false;
      for (size_t i = p + 1 + (negate ? 1 : 0); i < close; ++i) {
        if (i + 2 < close && pat_[i + 1] == '-') {
          in = in || (text_[t] >= pat_[i] && text_[t] <= pat_[i + 2]);
          i += 2;
        } else {
          in = in || text_[t] == pat_[i];
        }
      }
      return text_[t] != '/' && in != negate && match(close + 1, t + 1);
    }
    if (c == '\\' && p + 1 < pat_.size()) return text_[t] == pat_[p + 1] && match(p + 2, t + 1);
    return text_[t] == c && match(p + 1, t + 1);
  }

  std::string_view pat_, text_;
  std::vector<int8_t> memo_;
};

}  // namespace

void Excludes::add(std::string_view pattern) {
  const std::string original(pattern);
  while (!pattern.empty() && (pattern.back() == ' ' || pattern.back() == '\r') &&
         !(pattern.size() >= 2 && pattern[pattern.size() - 2] == '\\'))
    pattern.remove_suffix(1);
  if (pattern.empty() || pattern.front() == '#') return;
  Rule r;
  if (pattern.front() == '!') {
    r.negate = true;
    pattern.remove_prefix(1);
  } else if (pattern.size() >= 2 && pattern[0] == '\\' && (pattern[1] == '!' || pattern[1] == '#')) {
    pattern.remove_prefix(1);
  }
  if (!pattern.empty() && pattern.back() == '/') {
    r.dir_only = true;
    pattern.remove_suffix(1);
  }
  if (pattern.empty()) throw_invalid("--exclude " + original + ": an empty pattern");
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') {
      ++i;
    } else if (pattern[i] == '[' && pattern.find(']', i + 2) == std::string_view::npos) {
      throw_invalid("--exclude " + original + ": [ without ]");
    }
  }
  // A pattern with a slash before its end is anchored at PLAINDIR; a bare name matches at any depth.
  if (pattern.find('/') == std::string_view::npos)
    r.glob = "**/" + std::string(pattern);
  else
    r.glob = std::string(pattern.front() == '/' ? pattern.substr(1) : pattern);
  rules_.push_back(std::move(r));
}

void Excludes::add_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::InvalidArgument, errno, "--exclude-from " + path + ": " + std::strerror(errno));
  for (std::string line; std::getline(in, line);) add(line);
}

bool Excludes::excluded(std::string_view rel_path, bool is_dir) const {
  bool out = false;
  for (const auto& r : rules_) {
    if (r.dir_only && !is_dir) continue;
    if (Matcher(r.glob, rel_path).run()) out = !r.negate;
  }
  return out;
}

}  // namespace veil::reverse
