"""``python -m star_vsr`` runs the ``star-vsr`` command line."""

import sys

from star_vsr.cli import console_main

sys.exit(console_main())
