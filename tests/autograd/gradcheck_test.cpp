// TODO(in progress): tests being written.
