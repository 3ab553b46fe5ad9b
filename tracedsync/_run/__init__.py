"""tracedsync run: the runner, its summary, and the boot sitecustomize for child processes."""
