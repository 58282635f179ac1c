// Reverse mode's mount: serves a ReverseView read-only (reverse_ops.cpp), through the same session as forward
// mode's (session.cpp: signals, detaching, --idle).
#pragma once

#include "fuse/session.hpp"
#include "veilfs/reverse/reverse_view.hpp"

namespace veil::fuse {

int run_reverse_session(const reverse::ReverseView& view, const SessionOptions& opt);

}  // namespace veil::fuse
