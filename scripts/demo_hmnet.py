#!/usr/bin/env python
"""The HMNet demo (``make demo-hmnet``): both of HMNet's training stages learn on CPU in minutes.

The code is ``fssam.tools.demo_hmnet`` (``python -m fssam.tools.demo_hmnet`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.demo_hmnet import main

if __name__ == "__main__":
    sys.exit(main())
