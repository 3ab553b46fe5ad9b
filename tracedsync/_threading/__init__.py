"""The traced threading primitives, one module each, and what their proxies share."""
