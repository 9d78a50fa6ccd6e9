#!/usr/bin/env python
"""Check a PASCAL-5i or COCO-20i dataset before training on it.

The code is ``fssam.tools.data_check.cli`` (``python -m fssam.tools.data_check.cli`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.data_check.cli import main

if __name__ == "__main__":
    sys.exit(main())
