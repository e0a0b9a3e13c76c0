"""How well a judge agrees with people: metrics, the benchmark protocol, calibration maps."""
