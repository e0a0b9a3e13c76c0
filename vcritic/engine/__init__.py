"""The batch engine: batches of the size that fits, one in flight, halving on CUDA out-of-memory."""
