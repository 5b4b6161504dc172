"""`python -m lorasae.sweep`: the same command line as sweep.py (what the demo's sweep shards run)."""

import sys

from lorasae.sweep.run import cli

sys.exit(cli())
