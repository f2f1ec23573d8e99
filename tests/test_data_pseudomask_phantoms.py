"""Pseudo-masks vs radiologist masks on the real samples; VIA shapes; folds; phantoms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modise.data import pseudomask as pm
from modise.data.folds import patient_folds
from modise.data.imageio import read_image
from modise.data.phantoms import make_phantom, power_law_noise, prepare_synthetic
from modise.data.shapes import ShapeError, parse_shape, shape_to_mask


def test_pseudo_mask_beats_box_and_bare_recipe_on_real_lesions(sample_images):
    scores = {"box": [], "bare": [], "ours": []}
    for p in sample_images:
        img = read_image(p).pixels
        mask = np.asarray(Image.open(p.parent.parent / "masks" / p.name).convert("L")) >= 128
        for box, comp in pm.lesion_boxes(mask):
            scores["box"].append(pm.dice(pm.box_mask(mask.shape, box), comp))
            scores["bare"].append(pm.dice(pm.bare_pseudo_mask(img, box), comp))
            ours = pm.pseudo_mask(img, box)
            assert ours.dtype == bool and ours.shape == mask.shape
            scores["ours"].append(pm.dice(ours, comp))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert len(scores["ours"]) >= 15  # thin artefacts and specks left out, real lesions kept
    assert mean["ours"] >= 0.70, mean
    assert mean["ours"] > mean["box"] + 0.05 and mean["ours"] > mean["bare"] + 0.05, mean


def test_pseudo_mask_edge_cases():
    img = np.zeros((40, 40), np.float32)
    assert not pm.pseudo_mask(img, (50, 50, 60, 60)).any()  # box outside: empty
    flat = pm.pseudo_mask(img, (10, 10, 30, 30))  # flat crop: inscribed ellipse
    assert flat[20, 20] and not flat[10, 10]
    yy, xx = np.mgrid[0:40, 0:40]
    img[(xx - 20) ** 2 + (yy - 20) ** 2 <= 36] = 0.8
    img[2:6, 28:34] = 1.0  # a bright speck in the box corner is not the lesion
    m = pm.pseudo_mask(img, (8.2, 8.7, 33.9, 31.3))
    assert m[20, 20] and not m[3, 30]
    with pytest.raises(ValueError):
        pm.pseudo_mask(np.zeros((4, 4, 3)), (0, 0, 2, 2))


def test_via_shapes():
    poly = shape_to_mask(parse_shape('{"name":"polygon","all_points_x":[2,12,12,2],"all_points_y":[2,2,12,12]}'), 20, 20)
    assert poly[5, 5] and not poly[15, 15]
    assert shape_to_mask({"name": "circle", "cx": 10, "cy": 10, "r": 3}, 20, 20).sum() in range(25, 33)
    ell = shape_to_mask({"name": "ellipse", "cx": 10, "cy": 10, "rx": 8, "ry": 2}, 20, 20)
    assert ell[10, 3] and not ell[3, 10]
    assert shape_to_mask({"name": "point", "cx": 5, "cy": 5}, 20, 20).sum() > 20  # a small disk
    assert shape_to_mask({"name": "rect", "x": 0, "y": 0, "width": 4, "height": 2}, 20, 20)[1, 3]
    for bad in ('{"name": "polygon"', '{"name":"star"}', '{"name":"polygon","all_points_x":[1,2,3],"all_points_y":[1,1,1]}', "", '{"name":"circle","cx":1}'):
        with pytest.raises(ShapeError):
            shape_to_mask(parse_shape(bad), 20, 20)


def test_folds_patient_level_and_stratified():
    patients = {i: f"p{i // 2}" for i in range(40)}  # 20 patients, 2 images each
    labels = {i: ({2} if i < 10 else {1} if i < 30 else set()) for i in range(40)}
    folds = patient_folds(patients, labels, k=5, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(40))
    for f in folds:
        assert len({patients[i] for i in f}) * 2 == len(f)  # patients whole
        assert sum(1 for i in f if 2 in labels[i]) == 2  # malignant spread evenly
    assert patient_folds(patients, labels, k=5, seed=0) == folds
    assert len(patient_folds({1: "a", 2: "a"}, {}, k=5)) == 1


def test_power_law_spectrum_slope():
    noise = power_law_noise(np.random.default_rng(0), 128, beta=3.0)
    spec = np.abs(np.fft.rfft2(noise)) ** 2
    f = np.hypot(np.fft.fftfreq(128)[:, None], np.fft.rfftfreq(128)[None, :])
    sel = (f > 0.02) & (f < 0.3)
    slope = np.polyfit(np.log(f[sel]), np.log(spec[sel]), 1)[0]
    assert -3.5 < slope < -2.5


def test_phantom_contract_and_appearance():
    img, ids, info = make_phantom(np.random.default_rng(1), size=128, view="MLO", n_lesions=3)
    assert img.dtype == np.float32 and ids.dtype == np.int32 and img.shape == ids.shape == (128, 128)
    assert 0 <= img.min() and img.max() <= 1
    assert img[:, -3:].max() == 0 and img[64, :20].mean() > 0.2  # black background, breast on the wall
    assert img[3, 3] > img[64, 40]  # bright pectoral muscle in the MLO corner
    assert len(info) == 3 and set(np.unique(ids)) == {0, 1, 2, 3}
    for d in info:
        m = ids == d["id"]
        ring = np.zeros_like(m)
        y, x, h, w = d["bbox"][1], d["bbox"][0], d["bbox"][3], d["bbox"][2]
        ring[max(y - 6, 0) : y + h + 6, max(x - 6, 0) : x + w + 6] = True
        ring &= ~m & (ids == 0) & (img > 0)
        assert img[m].mean() > img[ring].mean() + 0.1  # clearly visible
        assert d["class"] in ("circumscribed_mass", "spiculated_mass")
        assert 0.06 * 128 <= d["radius"] <= 0.14 * 128
    a = make_phantom(np.random.default_rng(5), 96)
    b = make_phantom(np.random.default_rng(5), 96)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_phantom_classes_differ_in_shape():
    rng = np.random.default_rng(0)
    solidity = {"circumscribed_mass": [], "spiculated_mass": []}
    from skimage.measure import regionprops

    for _ in range(12):
        _, ids, info = make_phantom(rng, size=128, view="CC", n_lesions=2)
        for d in info:
            solidity[d["class"]].append(regionprops((ids == d["id"]).astype(int))[0].solidity)
    assert np.mean(solidity["circumscribed_mass"]) > np.mean(solidity["spiculated_mass"]) + 0.03


def test_prepare_synthetic_deterministic(tmp_path):
    r1 = prepare_synthetic(tmp_path / "a", n=6, seed=7, size=96, quiet=True)
    prepare_synthetic(tmp_path / "b", n=6, seed=7, size=96, quiet=True)
    assert r1["converted"] == 6 and r1["patients"] == 3
    for p in sorted((tmp_path / "a" / "panoptic").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / "panoptic" / p.name).read_bytes()
    import json

    data = json.loads((tmp_path / "a" / "panoptic.json").read_text())
    views = {(im["patient_id"], im["view"]) for im in data["images"]}
    assert len(views) == 6 and {v for _, v in views} == {"CC", "MLO"}


def test_phantom_lesion_mask_is_the_whole_drawn_disc_even_over_the_pectoral_muscle(monkeypatch):
    """A lesion reaching the pectoral muscle is drawn there too, so its ground truth covers it as well."""
    from modise.data import phantoms

    drawn = []  # (intensity, disc) of every lesion drawn, copied before make_phantom trims the mask
    real = phantoms._lesion
    monkeypatch.setattr(phantoms, "_lesion", lambda *a: (lambda r: drawn.append((r[0], r[1].copy())) or r)(real(*a)))
    rng = np.random.default_rng(0)
    missing = 0
    for i in range(8):  # as prepare_synthetic draws them: the 4th MLO has a mass over the pectoral muscle
        if i % 2 == 0:
            rng.random()  # the patient's side
        drawn.clear()
        img, ids, info = make_phantom(rng, size=128, view=("CC", "MLO")[i % 2])
        breast = img > 0  # the image is 0 outside the breast and at least ~0.1 inside
        kept = [d for d in drawn if (d[1] & breast).sum() >= 10]  # the lesions placed, in order
        for d, (_, disc) in zip(info, kept):
            missing += int((disc & breast & (ids == 0)).sum())
    assert missing == 0
