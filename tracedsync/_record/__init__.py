"""Recording: settings, the per-process recorder and its flusher, decoding and the sink."""
