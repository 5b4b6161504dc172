"""`python -m lorasae.demo`."""

import sys

from lorasae.demo.main import cli

if __name__ == "__main__":
    sys.exit(cli())
