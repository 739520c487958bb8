"""``python -m cdpulse``: the same as the ``cdpulse`` command."""

import sys

from cdpulse.cli.main import main

sys.exit(main())
