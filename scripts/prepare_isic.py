#!/usr/bin/env python
"""Prepare the ISIC2018 class folders of the cross-domain test set.

The code is ``fssam.tools.prepare_isic`` (``python -m fssam.tools.prepare_isic`` runs it too); ``--help``
lists the options.
"""

import sys

from fssam.tools.prepare_isic import main

if __name__ == "__main__":
    sys.exit(main())
