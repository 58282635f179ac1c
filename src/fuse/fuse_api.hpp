// The one place the libfuse API version is chosen; every file of src/fuse/ that needs libfuse includes this.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
