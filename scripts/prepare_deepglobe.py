#!/usr/bin/env python
"""Prepare the Deepglobe tiles of the cross-domain test set.

The code is ``fssam.tools.prepare_deepglobe`` (``python -m fssam.tools.prepare_deepglobe`` runs it too); ``--help``
lists the options.
"""

import sys

from fssam.tools.prepare_deepglobe import main

if __name__ == "__main__":
    sys.exit(main())
