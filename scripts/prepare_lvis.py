#!/usr/bin/env python
"""Prepare LVIS-92i: the masks and lists of the LVIS v1 json or of Matcher's pickles.

The code is ``fssam.tools.prepare_lvis`` (``python -m fssam.tools.prepare_lvis`` runs it
too); ``--help`` lists the options.
"""

import sys

from fssam.tools.prepare_lvis import main

if __name__ == "__main__":
    sys.exit(main())
