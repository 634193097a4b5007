// TODO(in progress): implementation being written.
#include "ops/conv2d.hpp"
