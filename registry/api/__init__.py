"""HTTP handlers, one module per resource. They ask the stores; they never write SQL or call a
storage driver directly."""
