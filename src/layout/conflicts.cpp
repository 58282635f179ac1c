#include "veilfs/layout/conflicts.hpp"

#include <algorithm>

#include "veilfs/format/constants.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

namespace veil::layout {
namespace {

// Hand-written matchers, one per service family (no std::regex: slow, and GCC 12 warns inside <regex> at -O1).
// Each returns the length of its marker starting at name[i], or 0.
class Scan {
 public:
  Scan(std::string_view s, size_t i) : s_(s), i_(i) {}
  bool lit(std::string_view l) {
    if (s_.substr(i_, l.size()) != l) return false;
    i_ += l.size();
    return true;
  }
  bool digits(size_t n) {
    return run(n, [](char c) { return c >= '0' && c <= '9'; });
  }
  bool upper_alnum(size_t n) {
    return run(n, [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'); });
  }
  size_t pos() const { return i_; }

 private:
  template <class P>
  bool run(size_t n, P ok) {
    if (i_ + n > s_.size() || !std::all_of(s_.begin() + i_, s_.begin() + i_ + n, ok)) return false;
    i_ += n;
    return true;
  }
  std::string_view s_;
  size_t i_;
};

size_t syncthing_at(std::string_view s, size_t i) {  // .sync-conflict-YYYYMMDD-HHMMSS-XXXXXXX
  Scan c(s, i);
  return c.lit(".sync-conflict-") && c.digits(8) && c.lit("-") && c.digits(6) && c.lit("-") && c.upper_alnum(7)
             ? c.pos() - i
             : 0;
}

size_t conflicted_copy_at(std::string_view s, size_t i) {  // " (... conflicted copy ...)": Dropbox, Nextcloud
  if (s.substr(i, 2) != " (") return 0;
  size_t close = s.find_first_of("()/", i + 2);
  if (close == std::string_view::npos || s[close] != ')') return 0;
  return s.substr(i + 2, close - i - 2).find("conflicted copy") == std::string_view::npos ? 0 : close + 1 - i;
}

size_t owncloud_at(std::string_view s, size_t i) {  // _conflict-YYYYMMDD-HHMMSS
  Scan c(s, i);
  return c.lit("_conflict-") && c.digits(8) && c.lit("-") && c.digits(6) ? c.pos() - i : 0;
}

size_t unison_at(std::string_view s, size_t i) {  // " (conflict[ #N]_on_YYYY-MM-DD[_was_deleted])"
  Scan c(s, i);
  if (!c.lit(" (conflict")) return 0;
  if (c.lit(" #")) {
    size_t start = c.pos();
    while (c.digits(1)) {
    }
    if (c.pos() == start) return 0;
  }
  if (!(c.lit("_on_") && c.digits(4) && c.lit("-") && c.digits(2) && c.lit("-") && c.digits(2))) return 0;
  c.lit("_was_deleted");
  return c.lit(")") ? c.pos() - i : 0;
}

size_t rsync_backup_at(std::string_view s, size_t i) { return i + 1 == s.size() && s[i] == '~' ? 1 : 0; }

bool may_hold_marker(std::string_view name) {
  return name.find("conflict") != std::string_view::npos || name.ends_with('~');
}

// rsync appends its backup suffix to the whole name; the others put their marker before the extension.
bool appended(std::string_view marker) { return marker == "~"; }

size_t extension_start(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot == std::string_view::npos || dot == 0 ? name.size() : dot;
}

}  // namespace

std::optional<ConflictMarker> find_conflict_marker(std::string_view name) {
  if (!may_hold_marker(name)) return std::nullopt;
  for (size_t i = 0; i < name.size(); ++i) {
    for (auto at : {syncthing_at, conflicted_copy_at, owncloud_at, unison_at, rsync_backup_at})
      if (size_t n = at(name, i)) return ConflictMarker{i, std::string(name.substr(i, n))};
  }
  return std::nullopt;
}

std::optional<ConflictCopy> parse_conflict_backing(std::string_view backing) {
  auto m = find_conflict_marker(backing);
  if (!m) return std::nullopt;
  std::string original(backing.substr(0, m->pos));
  original.append(backing.substr(m->pos + m->marker.size()));
  if (original.empty() || original == "." || original == "..") return std::nullopt;
  return ConflictCopy{std::move(original), std::move(m->marker)};
}

std::string insert_conflict_marker(std::string_view name, std::string_view marker) {
  size_t at = appended(marker) ? name.size() : extension_start(name);
  std::string out(name.substr(0, at));
  out.append(marker);
  out.append(name.substr(at));
  return out;
}

std::string shown_conflict_name(std::string_view plain, std::string_view marker) {
  std::string shown = insert_conflict_marker(plain, marker);
  if (shown.size() <= format::kMaxPlainNameSize) return shown;
  size_t at = appended(marker) ? plain.size() : extension_start(plain);
  std::string_view stem = plain.substr(0, at), ext = plain.substr(at);
  size_t keep = format::kMaxPlainNameSize > marker.size() + ext.size()
                    ? format::kMaxPlainNameSize - marker.size() - ext.size()
                    : 0;
  keep = std::min(keep, stem.size());
  // Never cut a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
  while (keep > 0 && keep < stem.size() && (static_cast<unsigned char>(stem[keep]) & 0xC0) == 0x80) --keep;
  shown.assign(stem.substr(0, keep));
  shown.append(marker);
  shown.append(ext);
  if (shown.size() > format::kMaxPlainNameSize) shown.resize(format::kMaxPlainNameSize);  // a giant extension
  return shown;
}

std::optional<std::pair<std::string, std::string>> split_conflict_name(std::string_view shown) {
  auto m = find_conflict_marker(shown);
  if (!m) return std::nullopt;
  std::string plain(shown.substr(0, m->pos));
  plain.append(shown.substr(m->pos + m->marker.size()));
  if (plain.empty() || plain == "." || plain == "..") return std::nullopt;
  return std::pair{std::move(plain), std::move(m->marker)};
}

std::vector<std::string> conflict_backing_candidates(std::string_view original, std::string_view marker) {
  std::vector<std::string> out{insert_conflict_marker(original, marker)};
  std::string appended = std::string(original) + std::string(marker);
  if (appended != out.front()) out.push_back(std::move(appended));
  return out;
}

bool is_sync_service_file(std::string_view n) {
  if (n.empty() || (n[0] != '.' && n[0] != '~')) return false;  // encoded names never start with either
  if (n == ".stfolder" || n == ".stignore" || n == ".stversions" || n == ".dropbox" || n == ".dropbox.attr" ||
      n == ".dropbox.cache")
    return true;
  auto starts = [&](std::string_view p) { return n.substr(0, p.size()) == p; };
  if ((starts(".syncthing.") || starts("~syncthing~")) && n.ends_with(".tmp")) return true;
  if (starts(".sync_") && n.find(".db") != std::string_view::npos) return true;
  if (n.ends_with("sync.log") || starts(".unison.")) return true;
  // rsync's temp file while receiving NAME: ".NAME.XXXXXX", six letters or digits.
  auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  auto name_char = [&](char c) { return alnum(c) || c == '_' || c == '-' || c == '.'; };
  if (n.size() < 9 || n[0] != '.' || n[n.size() - 7] != '.') return false;
  std::string_view tail = n.substr(n.size() - 6), middle = n.substr(1, n.size() - 8);
  return std::all_of(tail.begin(), tail.end(), alnum) && std::all_of(middle.begin(), middle.end(), name_char);
}

std::optional<std::string> shown_name_of(int dirfd, std::string_view b, const DecryptName& decrypt, bool* undecodable,
                                         bool* conflict) {
  if (undecodable) *undecodable = false;
  if (conflict) *conflict = false;
  auto decode = [&](std::string_view backing) -> std::optional<std::string> {
    if (is_long_name(backing)) {
      try {
        return decrypt(read_long_name(dirfd, backing));
      } catch (const Error&) {
        return std::nullopt;
      }
    }
    return is_reserved(backing) ? std::nullopt : decrypt(backing);
  };
  const bool named = is_long_name(b) || !is_reserved(b);
  if (named) {
    if (auto plain = decode(b)) return plain;
  }
  auto copy = parse_conflict_backing(b);
  if (copy && (is_long_name(copy->original) || !is_reserved(copy->original))) {
    if (auto plain = decode(copy->original)) {
      if (conflict) *conflict = true;
      return shown_conflict_name(*plain, copy->marker);
    }
    if (undecodable) *undecodable = true;
    return std::nullopt;
  }
  if (undecodable) *undecodable = named;
  return std::nullopt;
}

}  // namespace veil::layout
