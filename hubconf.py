"""torch.hub entrypoints for cutmix_zoo: ``torch.hub.load("<owner>/cutmix-zoo", "resnet50", features_only=True)``.

One documented entrypoint per architecture (its CutMix weights) and per registry name
(``resnet50_mixup_in1k``), all generated from the registry; each takes ``cutmix_zoo.load``'s
keyword arguments.
"""

dependencies = ["torch", "torchvision", "huggingface_hub", "safetensors", "requests", "tqdm", "filelock"]

from cutmix_zoo.entrypoints import hub_entrypoints as _hub_entrypoints  # noqa: E402

globals().update(_hub_entrypoints())
