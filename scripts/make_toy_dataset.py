#!/usr/bin/env python
"""Write a synthetic few-shot segmentation dataset in the PASCAL or COCO layout.

The code is ``fssam.tools.make_toy_dataset`` (``python -m fssam.tools.make_toy_dataset`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.make_toy_dataset import main

if __name__ == "__main__":
    sys.exit(main())
