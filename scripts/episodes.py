#!/usr/bin/env python
"""Write the evaluation episodes of a protocol as CSV: which query, class and supports.

The code is ``fssam.tools.episodes`` (``python -m fssam.tools.episodes`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.episodes import main

if __name__ == "__main__":
    sys.exit(main())
