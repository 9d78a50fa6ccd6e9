#!/usr/bin/env python
"""Write COCO-20i class-index labels (annotations/{train2014,val2014}/*.png) from COCO's JSON.

The code is ``fssam.tools.prepare_coco`` (``python -m fssam.tools.prepare_coco`` runs it too); ``--help`` lists the
options.
"""

import sys

from fssam.tools.prepare_coco import main

if __name__ == "__main__":
    sys.exit(main())
