"""The lowest layer: what the hot path reads (runtime values, op codes), primitive state and
ids, call sites, diagnostics, and the optional C extension. Imports nothing above it."""
