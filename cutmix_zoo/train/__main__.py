"""``python -m cutmix_zoo.train``: the trainer, with errors a user caused printed as one line.

Exit codes as ``cutmix-zoo``: 0 done, 1 a failure while working (data, files), 2 bad input,
143 interrupted by SIGTERM with a checkpoint saved.
"""

import sys

from ..errors import InvalidArgumentError, UnknownModelError, ZooError
from . import train_main

try:
    sys.exit(train_main())
except ZooError as error:
    print(f"cutmix-zoo train: error: {error}", file=sys.stderr)
    sys.exit(2 if isinstance(error, (InvalidArgumentError, UnknownModelError)) else 1)
