"""``python -m lb_ioloop``: the same as the ``lb-ioloop`` command."""

import sys

from .cli import main

sys.exit(main())
