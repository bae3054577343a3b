"""torch.hub entrypoints for cutmix_zoo: ``torch.hub.load(".", "resnet50", source="local", features_only=True)`` in a clone.

One documented entrypoint per architecture (its CutMix weights) and per registry name
(``resnet50_mixup_in1k``), all generated from the registry; each takes ``pretrained`` positionally,
as torchvision's do, and ``cutmix_zoo.load``'s keyword arguments.

Only torch and torchvision are required: every architecture builds with ``pretrained=False``
without anything else installed. Pretrained weights need safetensors (the embedded Shapes-10
models need nothing more) and, for weights that are downloaded, huggingface_hub, requests and
tqdm; a load that lacks one says which to ``pip install``.
"""

dependencies = ["torch", "torchvision"]

from cutmix_zoo.entrypoints import hub_entrypoints as _hub_entrypoints  # noqa: E402

globals().update(_hub_entrypoints())
