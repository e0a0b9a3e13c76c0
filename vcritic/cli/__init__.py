"""Command-line interface. ``app.py`` wires the commands; each command lives in its own module."""
