"""The paper's evaluation protocol: PQ/RQ/SQ swept over IoU thresholds
with MONAI's matching rule, COCO AP at the best threshold (on the model's instances, as
detectron2 scores Mask2Former/ODISE, or on panoptic segments), Dice; folder evaluation,
validation of a model on a dataset (:mod:`.validate`) and the report over folds. Figures and
overlays are drawn by :mod:`modise.viz`."""

from .evaluator import AP_SOURCES, DEFAULT_THRESHOLDS, PanopticEvaluator, check_thresholds, parse_thresholds
from .instances import INSTANCES_JSON
from .matching import ImageResult, match_image

__all__ = [
    "AP_SOURCES",
    "DEFAULT_THRESHOLDS",
    "INSTANCES_JSON",
    "ImageResult",
    "PanopticEvaluator",
    "check_thresholds",
    "evaluate_folders",
    "match_image",
    "parse_thresholds",
    "write_report",
]


def __getattr__(name):  # lazy: folder IO / report pull in more modules
    if name == "evaluate_folders":
        from .folders import evaluate_folders

        return evaluate_folders
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(name)
