// TODO(in progress): implementation being written.
#include "ops/pool.hpp"
