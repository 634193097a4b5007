// TODO(in progress): being written.
