"""``python -m fssam.app``: see ``fssam.app.cli``."""

from fssam.app.cli import main

raise SystemExit(main())
