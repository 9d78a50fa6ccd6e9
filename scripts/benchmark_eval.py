#!/usr/bin/env python
"""Evaluation speed with the encoder cache off, on a cold first pass and on a warm second pass.

The code is ``fssam.tools.benchmark_eval`` (``python -m fssam.tools.benchmark_eval`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.benchmark_eval import main

if __name__ == "__main__":
    sys.exit(main())
