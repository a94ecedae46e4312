"""Private helpers (the positive filter, the softmax back end)."""
