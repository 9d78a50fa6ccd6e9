#!/usr/bin/env python
"""The README's screenshot of the web app, taken in headless Chromium, with its timings.

The code is ``fssam.tools.app_screenshot``; ``--help`` lists the options.
"""

import sys

from fssam.tools.app_screenshot import main

if __name__ == "__main__":
    sys.exit(main())
