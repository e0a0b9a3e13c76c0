"""The base layer: files, size limits, CSV, paths, progress, image files and doc links. No model, nothing heavy."""
