"""``python -m vcritic`` (and ``accelerate launch -m vcritic train ...``)."""

from vcritic.cli.app import run

if __name__ == "__main__":
    run()
