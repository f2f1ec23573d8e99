"""One palette everywhere: `modise evaluate`'s overlays and `modise predict`'s Fig. 2 overlays
paint a class in the same RGB; one sweep figure for evaluate and the demo."""

from __future__ import annotations

import numpy as np
from PIL import Image

from modise.data.coco_records import Instances
from modise.data.panoptic import Category, PanopticFolderWriter
from modise.engine.evaluation import evaluate_folders
from modise.model.config import InferenceConfig
from modise.pipeline import PanopticResult
from modise.viz.overlays import figure2
from modise.viz.palette import CLASS_COLOURS, class_colour

CATS = [Category(1, "benign"), Category(2, "malignant")]


def _square(h: int = 48, w: int = 48) -> np.ndarray:
    ids = np.zeros((h, w), np.int64)
    ids[10:30, 12:32] = 5
    return ids


def _colour_count(arr: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(arr[..., :3] == np.array(colour, np.uint8), axis=-1).sum())


def test_palette_is_by_position_and_unknown_is_white():
    assert class_colour(CATS, 1) == CLASS_COLOURS[0] and class_colour(CATS, 2) == CLASS_COLOURS[1]
    assert class_colour(CATS, 99) == (255, 255, 255)


def test_evaluate_and_predict_overlays_share_class_colours(tmp_path):
    ids = _square()
    segs = [{"id": 5, "category_id": 2, "score": 0.9}]
    for name in ("gt", "pred"):
        w = PanopticFolderWriter(tmp_path / name, CATS)
        w.add({"id": 1, "file_name": "a.png", "height": 48, "width": 48}, ids, segs)
        w.finish()
    evaluate_folders(tmp_path / "gt", tmp_path / "pred", tmp_path / "E", overlays=1)
    ev = np.asarray(Image.open(tmp_path / "E" / "overlays" / "a.png").convert("RGB"))
    res = PanopticResult(ids, segs, Instances(labels=np.array([1]), scores=np.array([0.9]), masks=(ids == 5)[None]),
                         np.zeros((2, 48, 48), np.float32), InferenceConfig())
    pr = np.asarray(figure2(np.full((48, 48), 0.5, np.float32), res, CATS))
    mal, ben = class_colour(CATS, 2), class_colour(CATS, 1)
    # the lesion's outline is drawn in its class colour in both; benign only shows in the legend text
    assert _colour_count(ev, mal) > 100 and _colour_count(pr, mal) > 100
    assert _colour_count(ev, mal) > 10 * max(1, _colour_count(ev, ben))
    assert _colour_count(pr, mal) > 10 * max(1, _colour_count(pr, ben))
    assert _colour_count(ev, (60, 180, 75)) == 0  # the former second palette of `evaluate`


def test_one_sweep_figure_with_optional_title(tmp_path):
    from modise.viz.figures import threshold_sweep_figure

    m = {"thresholds": [0.1, 0.5, 0.9], "pq": [50.0, 40.0, None], "rq": [60.0, 50.0, None], "sq": [80.0, 80.0, None],
         "best": {"threshold": 0.1}}
    threshold_sweep_figure(m, tmp_path / "a.png")
    threshold_sweep_figure(m, tmp_path / "b.png", title="Held-out phantoms")
    a, b = (np.asarray(Image.open(tmp_path / f).convert("RGB")) for f in ("a.png", "b.png"))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_instances_are_outlined_in_their_class_colour_and_labels_keep_name_and_score_apart():
    from modise.viz.overlays import LABEL_GAP, instance_view

    masks = np.zeros((2, 160, 160), bool)
    masks[0, 40:80, 10:50], masks[1, 100:140, 60:120] = True, True
    view = instance_view(np.full((160, 160), 0.2, np.float32), masks, [0, 1], [0.83, 0.9], CATS)
    for m, cat in zip(masks, CATS):
        border = m & ~np.pad(m[1:-1, 1:-1], 1)  # the mask's outer ring of pixels
        assert np.all(view[border] == np.array(class_colour(CATS, cat.id), np.uint8))
    # the label row above the first instance: the name's ink, a gap of background, then the score's ink
    ink = np.any(view[26:40, 10:] != view[5, 150], axis=-1).any(axis=0)
    cols = np.flatnonzero(ink)
    assert np.diff(cols).max() > LABEL_GAP - 1, "class name and score run together"
