"""Runtime detection: the wait-for graph, lock order, the watchdog and snapshots."""
