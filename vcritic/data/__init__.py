"""Training data construction: the dialogues of each curriculum stage, synthetic distortions, rewriting."""
