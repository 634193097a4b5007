// TODO(in progress): implementation being written.
#include "ops/softmax.hpp"
