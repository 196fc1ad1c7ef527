"""`python -m jetscale`: the same command line as the `jetscale` script, from any interpreter that has the package.

The workflow's rules call it this way (through the interpreter that runs Snakemake), so a study runs without the
environment's bin directory on PATH.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
