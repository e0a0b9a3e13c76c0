"""Helpers the tests share (tests/ is on sys.path through pyproject's pytest ``pythonpath``): tiny dataset copies,
a stand-in hub, model-family parameters, training data, launched-CLI helpers, LoRA adapters, CLI output readers,
image lists. Fixtures stay in tests/conftest.py."""
