#include "veilfs/reverse/excludes.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "veilfs/util/error.hpp"

namespace veil::reverse {

namespace {

// The pattern (without its "!" and trailing "/") as a regular expression over a whole relative path.
std::string to_regex(std::string_view p, const std::string& original) {
  std::string re;
  const bool anchored = p.find('/') != std::string_view::npos;
  if (!p.empty() && p.front() == '/') p.remove_prefix(1);
  if (!anchored) re += "(?:.*/)?";  // a bare name: at any depth
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '*' && i + 1 < p.size() && p[i + 1] == '*') {
      const bool at_start = i == 0, slash_after = i + 2 < p.size() && p[i + 2] == '/';
      const bool at_end = i + 2 == p.size();
      if (at_start && slash_after) {  // "**/x": x at any depth
        re += "(?:.*/)?";
        i += 2;
      } else if (at_end) {  // "x/**": everything inside x
        re += ".*";
        i += 1;
      } else if (slash_after) {  // "a/**/b": zero or more directories
        re += "(?:.*/)?";
        i += 2;
      } else {
        re += "[^/]*";  // "**" inside a name is "*"
        i += 1;
      }
    } else if (c == '*') {
      re += "[^/]*";
    } else if (c == '?') {
      re += "[^/]";
    } else if (c == '[') {
      const size_t close = p.find(']', i + 2);
      if (close == std::string_view::npos) throw_invalid("--exclude " + original + ": [ without ]");
      std::string cls(p.substr(i + 1, close - i - 1));
      if (!cls.empty() && cls[0] == '!') cls[0] = '^';
      std::string safe;
      for (char k : cls) {
        if (k == '\\' || k == '[' || k == ']') safe += '\\';
        safe += k;
      }
      re += "(?![/])[" + safe + "]";
      i = close;
    } else if (c == '\\' && i + 1 < p.size()) {
      re += '\\';
      re += p[++i];
    } else {
      if (std::strchr(".^$|()+{}\\", c)) re += '\\';
      re += c;
    }
  }
  return re;
}

}  // namespace

void Excludes::add(std::string_view pattern) {
  std::string original(pattern);
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
  try {
    r.re = std::regex(to_regex(pattern, original), std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error&) {
    throw_invalid("--exclude " + original + ": not a pattern veilfs can read");
  }
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
    if (std::regex_match(rel_path.begin(), rel_path.end(), r.re)) out = !r.negate;
  }
  return out;
}

}  // namespace veil::reverse
