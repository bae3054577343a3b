"""``python -m cutmix_zoo.train``: the trainer, with errors a user caused printed as one line.

Exit codes as ``cutmix-zoo`` (:func:`cutmix_zoo.errors.exit_code`): 0 done, 1 a failure while working
(data, files), 2 bad input, 143 interrupted by SIGTERM with a checkpoint saved.
"""

import sys

from ..errors import ZooError, exit_code
from . import train_main

try:
    sys.exit(train_main())
except ZooError as error:
    print(f"cutmix-zoo train: error: {error}", file=sys.stderr)
    sys.exit(exit_code(error))
