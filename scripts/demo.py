#!/usr/bin/env python
"""The demo (``make demo``): FSSAM learns few-shot segmentation on CPU in a few minutes.

The code is ``fssam.tools.demo`` (``python -m fssam.tools.demo`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.demo import main

if __name__ == "__main__":
    sys.exit(main())
