// TODO(in progress): implementation being written.
#include "ops/shape.hpp"
