"""``python -m tracedsync``: the command line."""

from .cli import console_main

if __name__ == "__main__":  # not when a spawned worker process imports this as its __main__
    console_main()
