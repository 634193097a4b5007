// TODO(in progress): implementation being written.
#include "ops/arithmetic.hpp"
