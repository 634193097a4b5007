// TODO(in progress): implementation being written.
#include "ops/linear.hpp"
