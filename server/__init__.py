"""trio I/O: listeners, the upstream connection pool and step execution."""
