"""Core machinery shared by every method: layers, hooks, targets, batching, results."""
