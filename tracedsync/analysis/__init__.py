"""Reading tracedsync logs back and turning them into answers."""
