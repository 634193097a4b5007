// TODO(in progress): implementation being written.
#include "ops/activation.hpp"
