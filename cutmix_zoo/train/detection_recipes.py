"""Published detection training settings as ``--recipe`` values of ``cutmix-zoo detect train``, each value with its source.

- ``coco_faster_rcnn``: torchvision's detection reference for Faster R-CNN R50-FPN on COCO (references/detection: its
  README's command ``train.py --model fasterrcnn_resnet50_fpn --epochs 26 --lr-steps 16 22 --aspect-ratio-group-factor 3``
  on 8 GPUs x 2 images, and train.py's defaults for every other value).
- ``voc_paper``: the CutMix paper's Pascal VOC setting (its transfer-learning experiment) as far as the paper states it: a ResNet-50
  backbone fine-tuned with Faster R-CNN on VOC 2007+2012 trainval (``--data VOC2007 --data VOC2012``) and scored on VOC
  2007 test by mAP at IoU 0.5 (``val_map50``). The paper lists no detector hyper-parameter; every one of them here is
  Detectron2's ``PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml`` (and its ``Base-RCNN-FPN.yaml`` and defaults), the
  public Faster R-CNN R50-FPN setting for exactly that data, with its 18000 iterations (17.4 epochs of VOC 07+12 at 16
  images) rounded to 18 epochs and its steps at iterations 12000 and 16000 put at the same fractions of them (12, 16).
- ``scenes``: the generated Novel-Shapes scenes (``cutmix-zoo shapes --scenes``, 80 px) on a CPU; its schedule was checked
  by one measured run, the rest taken from torchvision's reference or sized to the scenes (see :data:`SCENES_MEASURED`).

The learning rate of every recipe is given for its ``batch_size`` and scaled linearly to the global batch a run uses
(the rule torchvision's and Detectron2's recipes state: "0.02 for 8 GPUs x 2 images").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError

TORCHVISION = "torchvision references/detection"
DETECTRON2_VOC = "Detectron2 configs/PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml"
DETECTRON2_BASE = "Detectron2 configs/Base-RCNN-FPN.yaml"
DETECTRON2_DEFAULTS = "Detectron2 config/defaults.py"
MEASURED = "checked by one run on the generated scenes (SCENES_MEASURED), not swept"
# What the ``scenes`` recipe's values were chosen from (the measurements that chose them).
SCENES_MEASURED = ("one run, not a sweep: 64 train / 32 val scenes of 80 px (cutmix-zoo shapes --scenes, seed 0), "
                   "pyramidnet20_a48.cutmix_shapes, Faster R-CNN, one CPU process, this recipe: val mAP@0.5 by epoch 0.00, 0.00, "
                   "0.01, 0.17, 0.16, 0.25, 0.32, 0.47, 0.52, 0.54, 0.55, 0.55 (mAP@[.5:.95] 0.27 at the end), so 12 epochs with "
                   "x0.1 at 8 and 11 end where mAP@0.5 has flattened; lr 0.02 at batch 8 trained without diverging; torchvision's "
                   "default proposal counts made an epoch take 98 s against 27 s with this recipe's (a shared 2-core CPU). Other "
                   "learning rates, batches and sizes were not compared")


@dataclass(frozen=True)
class DetectionRecipe:
    """A published setting: ``values`` (DetectionRun fields, the learning rate for ``batch_size`` images) and, for each,
    where it comes from (``sources``)."""

    name: str
    summary: str
    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def run_fields(self, batch_size: int | None = None) -> dict[str, Any]:
        """The recipe's DetectionRun fields for a global batch of ``batch_size`` (default the recipe's), the learning rate
        scaled linearly to it."""
        values = dict(self.values)
        if batch_size is not None:
            values["lr"] = self.values["lr"] * batch_size / self.values["batch_size"]
            values["batch_size"] = batch_size
        return {**values, "recipe": self.name}


COCO_FASTER_RCNN = DetectionRecipe(
    "coco_faster_rcnn", "torchvision's COCO reference for Faster R-CNN R50-FPN (37.0 box AP with an ImageNet ResNet-50)",
    {"detector": "faster_rcnn", "batch_size": 16, "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 26,
     "lr_milestones": (16, 22), "lr_gamma": 0.1, "warmup_steps": 1000, "warmup_factor": 0.001, "aspect_group_factor": 3,
     "flip": 0.5, "min_size": 800, "max_size": 1333, "freeze_stages": 2},
    {"detector": f"{TORCHVISION} README: --model fasterrcnn_resnet50_fpn",
     "batch_size": f"{TORCHVISION} README: --nproc_per_node=8, train.py -b 2 (images per GPU)",
     "lr": f"{TORCHVISION} train.py --lr 0.02 ('for training on 8 gpus and 2 images_per_gpu'), scaled linearly to the batch",
     "momentum": f"{TORCHVISION} train.py --momentum 0.9", "weight_decay": f"{TORCHVISION} train.py --wd 1e-4",
     "epochs": f"{TORCHVISION} README: --epochs 26", "lr_milestones": f"{TORCHVISION} README: --lr-steps 16 22",
     "lr_gamma": f"{TORCHVISION} train.py --lr-gamma 0.1",
     "warmup_steps": f"{TORCHVISION} engine.py: linear warm-up over min(1000, len(data_loader) - 1) steps of the first epoch",
     "warmup_factor": f"{TORCHVISION} engine.py: warmup_factor = 1.0 / 1000",
     "aspect_group_factor": f"{TORCHVISION} README: --aspect-ratio-group-factor 3",
     "flip": f"{TORCHVISION} presets.py: --data-augmentation hflip (RandomHorizontalFlip, p=0.5)",
     "min_size": "torchvision FasterRCNN default min_size=800 (one scale in the hflip policy)",
     "max_size": "torchvision FasterRCNN default max_size=1333",
     "freeze_stages": "torchvision fasterrcnn_resnet50_fpn: trainable_backbone_layers=3 with pretrained weights (stem and layer1 frozen)"},
)

VOC_MIN_SIZES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
VOC_PAPER = DetectionRecipe(
    "voc_paper", "the CutMix paper's VOC 07+12 Faster R-CNN fine-tuning (75.6 -> 76.7 mAP@0.5 with ResNet-50); the paper "
                 "states the data, the detector and the metric, Detectron2's VOC setting supplies the rest",
    {"detector": "faster_rcnn", "batch_size": 16, "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 18,
     "lr_milestones": (12, 16), "lr_gamma": 0.1, "warmup_steps": 100, "warmup_factor": 0.001, "aspect_group_factor": 0,
     "flip": 0.5, "min_size": VOC_MIN_SIZES, "max_size": 1333, "freeze_stages": 2},
    {"detector": "the CutMix paper: Faster R-CNN on a ResNet-50 backbone (the FPN is not in the paper: Detectron2's R50-FPN config)",
     "batch_size": f"not in the paper: {DETECTRON2_BASE} SOLVER.IMS_PER_BATCH 16",
     "lr": f"not in the paper: {DETECTRON2_BASE} SOLVER.BASE_LR 0.02, scaled linearly to the batch",
     "momentum": f"not in the paper: {DETECTRON2_DEFAULTS} SOLVER.MOMENTUM 0.9",
     "weight_decay": f"not in the paper: {DETECTRON2_DEFAULTS} SOLVER.WEIGHT_DECAY 1e-4",
     "epochs": f"not in the paper: {DETECTRON2_VOC} SOLVER.MAX_ITER 18000 ('17.4 epochs'), rounded up to 18",
     "lr_milestones": f"not in the paper: {DETECTRON2_VOC} SOLVER.STEPS (12000, 16000) of 18000, at the same fractions of 18 epochs",
     "lr_gamma": f"not in the paper: {DETECTRON2_DEFAULTS} SOLVER.GAMMA 0.1",
     "warmup_steps": f"not in the paper: {DETECTRON2_VOC} SOLVER.WARMUP_ITERS 100 (linear)",
     "warmup_factor": f"not in the paper: {DETECTRON2_DEFAULTS} SOLVER.WARMUP_FACTOR 0.001",
     "aspect_group_factor": f"not in the paper: {DETECTRON2_DEFAULTS} DATALOADER.ASPECT_RATIO_GROUPING (landscape vs portrait)",
     "flip": f"not in the paper: {DETECTRON2_DEFAULTS} INPUT.RANDOM_FLIP 'horizontal'",
     "min_size": f"not in the paper: {DETECTRON2_VOC} INPUT.MIN_SIZE_TRAIN (480..800 step 32, one drawn per image), MIN_SIZE_TEST 800",
     "max_size": f"not in the paper: {DETECTRON2_DEFAULTS} INPUT.MAX_SIZE_TRAIN / MAX_SIZE_TEST 1333",
     "freeze_stages": f"not in the paper: {DETECTRON2_DEFAULTS} MODEL.BACKBONE.FREEZE_AT 2 (stem and res2 frozen)"},
)

SCENES = DetectionRecipe(
    "scenes", "a small setting for the generated Novel-Shapes scenes on a CPU (its schedule checked by one measured run)",
    {"detector": "faster_rcnn", "batch_size": 8, "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 12,
     "lr_milestones": (8, 11), "lr_gamma": 0.1, "warmup_steps": 8, "warmup_factor": 0.001, "aspect_group_factor": -1,
     "flip": 0.5, "min_size": 80, "max_size": 80, "freeze_stages": 1, "out_channels": 64,
     "detector_kwargs": {"rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300, "rpn_pre_nms_top_n_test": 300,
                         "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 64, "box_detections_per_img": 50}},
    {"batch_size": MEASURED, "lr": MEASURED, "epochs": MEASURED, "lr_milestones": MEASURED, "min_size": "the scenes' own 80 px: no resize",
     "max_size": "the scenes are square: max_size = min_size",
     "momentum": "torchvision's COCO reference (0.9)", "weight_decay": "torchvision's COCO reference (1e-4)",
     "lr_gamma": "torchvision's COCO reference (0.1)", "warmup_factor": "torchvision's COCO reference (0.001)",
     "warmup_steps": "one epoch of 64 scenes at batch 8 (torchvision's rule: warm-up within the first epoch)",
     "aspect_group_factor": "off: every scene is square", "flip": "torchvision's COCO reference (p=0.5)",
     "freeze_stages": "the stem only: the embedded 32 px models' first stage sees new shapes",
     "out_channels": "a 64-channel FPN: the embedded models are 48-192 channels wide",
     "detector_kwargs": "fewer proposals and sampled boxes than torchvision's COCO defaults (2000/2000/1000/1000, 512, 100): a "
                        "scene holds 1-4 objects, and the defaults made an epoch of 64 scenes take 98 s on a CPU"},
)

RECIPES = {r.name: r for r in (COCO_FASTER_RCNN, VOC_PAPER, SCENES)}
DEFAULT_RECIPE = COCO_FASTER_RCNN.name


def detection_recipe(name: str) -> DetectionRecipe:
    """The recipe called ``name``; an unknown name is one sentence listing the known ones."""
    if name not in RECIPES:
        raise InvalidArgumentError(f"--recipe {name!r} is not a detection recipe; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]


def recipes_help() -> str:
    """The recipes for ``--help``: each name and what it is, then each value with its source (the learning rate for the
    recipe's batch, scaled linearly to the one a run uses)."""
    blocks = []
    for r in RECIPES.values():
        lines = [f"{r.name}: {r.summary}"]
        lines += [f"  {key} = {value}  ({r.sources.get(key, 'torchvision default')})" for key, value in r.values.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
