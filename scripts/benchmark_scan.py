#!/usr/bin/env python
"""Selective-scan time at HMNet's sizes, for each implementation and the per-token loop.

The code is ``fssam.tools.benchmark_scan`` (``python -m fssam.tools.benchmark_scan`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.benchmark_scan import main

if __name__ == "__main__":
    sys.exit(main())
