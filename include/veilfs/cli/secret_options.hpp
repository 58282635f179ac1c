// The command-line options that say where an existing volume's secret comes from (--passfile, --extpass,
// --keyfile), spelt and explained alike by every offline command (veilkey's, veilfs fsck, veilfs xray). The mount
// has its own, since it also takes them as -o passfile=... (src/fuse/options.cpp).
#pragma once

#include <boost/program_options.hpp>
#include <optional>

#include "veilfs/cli/secret_source.hpp"

namespace veil::cli {

// An option value stored into a std::optional (Boost.Program_options 1.74 only knows boost::optional).
template <typename T>
boost::program_options::typed_value<T>* into(std::optional<T>& slot, const char* value_name) {
  return boost::program_options::value<T>()->value_name(value_name)->notifier([&slot](const T& v) { slot = v; });
}

// --passfile, --extpass and --keyfile, filling src when the parsed options are notified.
void add_secret_options(boost::program_options::options_description& d, SecretSource& src);

// --config FILE: the volume's config kept outside the cipher dir (empty when not given).
void add_config_option(boost::program_options::options_description& d, std::string& config_file);
inline constexpr const char* kConfigOptionHelp =
    "the volume's config is FILE, kept outside the cipher dir (veilkey init --config), not CIPHERDIR/veilfs.conf";

}  // namespace veil::cli
