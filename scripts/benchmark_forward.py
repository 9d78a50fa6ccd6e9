#!/usr/bin/env python
"""Forward time (and peak CUDA memory) of FSSAM with random weights, and of DINOv2 alone.

The code is ``fssam.tools.benchmark_forward`` (``python -m fssam.tools.benchmark_forward`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.benchmark_forward import main

if __name__ == "__main__":
    sys.exit(main())
