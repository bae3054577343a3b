"""Detection on zoo backbones: torchvision detectors built on the ResNets (and, through their feature levels, every
family)."""
