// Paths of the plain tree left out of the reverse view: gitignore-style patterns (veilfs --exclude PATTERN,
// --exclude-from FILE), matched against paths relative to PLAINDIR.
//
//   *, ?, [abc], [!a-z]   within one path component
//   **                    any number of components ("**/cache", "build/**", "a/**/b")
//   /pattern              anchored at PLAINDIR; a pattern with a slash inside is anchored too
//   pattern               otherwise the name of an entry at any depth
//   pattern/              directories only
//   !pattern              re-includes what an earlier pattern excluded (the last match decides)
//   #..., blank lines     ignored in files; \# and \! stand for a literal # and !
// An excluded directory hides everything beneath it: nothing inside can be re-included (as in git).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace veil::reverse {

class Excludes {
 public:
  // Throws Error(InvalidArgument) for a pattern that cannot be read (an unclosed [).
  void add(std::string_view pattern);
  // Every line of FILE as a pattern. Throws Error naming the file when it cannot be read.
  void add_file(const std::string& path);
  bool empty() const { return rules_.empty(); }
  bool excluded(std::string_view rel_path, bool is_dir) const;

 private:
  struct Rule {
    std::string glob;  // anchored at PLAINDIR (a bare name got a leading "**/")
    bool negate = false;
    bool dir_only = false;
  };
  std::vector<Rule> rules_;
};

}  // namespace veil::reverse
