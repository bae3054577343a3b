"""The command-line side: each module turns arguments into library calls and prints their results.

The library (cutmix_zoo.*) never imports this package; ``cutmix_zoo.cli`` dispatches to it."""
