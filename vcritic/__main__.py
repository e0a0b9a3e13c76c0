"""``python -m vcritic``: the same as the ``vcritic`` command."""

from vcritic.cli.app import run

if __name__ == "__main__":
    run()
