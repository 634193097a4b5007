// TODO(in progress)
#include "autograd/dot.hpp"
