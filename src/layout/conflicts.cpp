#include "veilfs/layout/conflicts.hpp"

#include <algorithm>
#include <regex>

#include "veilfs/format/constants.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

namespace veil::layout {
namespace {

// One pattern per service family; std::regex is slow, so callers only ask for names that failed to decode (or
// plain names that failed to look up), and a cheap substring test runs first.
const std::regex& marker_pattern() {
  static const std::regex re(
      R"(\.sync-conflict-[0-9]{8}-[0-9]{6}-[A-Z0-9]{7})"                               // Syncthing
      R"(| \([^()/]*conflicted copy[^()/]*\))"                                         // Dropbox, Nextcloud, ownCloud
      R"(|_conflict-[0-9]{8}-[0-9]{6})"                                                // ownCloud < 2.5
      R"(| \(conflict(?: #[0-9]+)?_on_[0-9]{4}-[0-9]{2}-[0-9]{2}(?:_was_deleted)?\))"  // unison -copyonconflict
      R"(|~$)",                                                                        // rsync --backup
      std::regex::optimize);
  return re;
}

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
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(name.begin(), name.end(), m, marker_pattern())) return std::nullopt;
  return ConflictMarker{static_cast<size_t>(m.position(0)), m.str(0)};
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
  static const std::regex rsync_tmp(R"(\.[A-Za-z0-9_.-]+\.[A-Za-z0-9]{6})", std::regex::optimize);
  return std::regex_match(n.begin(), n.end(), rsync_tmp);
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
