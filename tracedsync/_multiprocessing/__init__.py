"""The traced multiprocessing primitives, shared values, the shared owner record, the shared
wait table and the read-modify-write rule."""
