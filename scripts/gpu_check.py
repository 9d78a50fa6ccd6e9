#!/usr/bin/env python
"""Check a machine before a long run: precision, training, memory, speed and the torchrun path.

The code is ``fssam.tools.gpu_check_cli`` (``python -m fssam.tools.gpu_check_cli`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.gpu_check_cli import main

if __name__ == "__main__":
    sys.exit(main())
