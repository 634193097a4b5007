// TODO(in progress): implementation being written.
#include "ops/loss.hpp"
