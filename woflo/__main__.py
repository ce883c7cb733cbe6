"""``python -m woflo``: the same as the ``woflo`` command."""

import sys

from woflo._cli import main

sys.exit(main())
