"""Which checkpoint, where it lives and how it runs: presets, judges, the hub, device, dtype, image size."""
