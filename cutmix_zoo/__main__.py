"""``python -m cutmix_zoo`` runs the ``cutmix-zoo`` command."""

import sys

from .cli import main

sys.exit(main())
