// `veilfs fsck ...` without the daemon: like veilfs's main, hands over argv from "fsck" on.
#include "fsck/fsck_main.hpp"

int main(int argc, char** argv) { return argc < 2 ? 2 : veil::fsck::fsck_main(argc - 1, argv + 1); }
