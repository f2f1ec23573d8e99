"""Derived UIDs, the model fingerprint, and the class codes of :mod:`modise.dicom`."""

from __future__ import annotations

import json
import uuid

import pytest

from modise.data.panoptic import Category
from modise.errors import ModiseError


def test_derived_uid_is_a_2_25_uuid_of_its_parts():
    from modise.dicom.uids import derived_uid

    uid = derived_uid("model", "1.2.3", "SEG")
    assert uid == derived_uid("model", "1.2.3", "SEG") and uid.startswith("2.25.") and len(uid) <= 64
    u = uuid.UUID(int=int(uid[5:]))
    assert u.version == 8 and u.variant == uuid.RFC_4122  # RFC 9562 custom (hash-based) UUID
    assert len({uid, derived_uid("model", "1.2.3", "SR"), derived_uid("model", "1.2.4", "SEG"),
                derived_uid("model", "1.2.3SEG"), derived_uid("model2", "1.2.3", "SEG")}) == 5


def _model_folder(root, weights: bytes = b"w" * 1000):
    folder = root / "model"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("preset: m-odise\nrandom_weights: true\n")
    (folder / "categories.json").write_text(json.dumps([{"id": 1, "name": "mass"}]))
    (folder / "model.safetensors").write_bytes(weights)
    return root


def test_fingerprint_follows_weights_and_settings(tmp_path):
    from modise.dicom.uids import model_fingerprint

    settings = {"image_size": 128, "max_size": 320, "object_mask_threshold": 0.8, "overlap_threshold": 0.8}
    run = _model_folder(tmp_path / "a")
    fp = model_fingerprint(run, settings)
    assert fp == model_fingerprint(run, dict(reversed(settings.items())))  # a record, not an order
    assert fp == model_fingerprint(run / "model", settings)  # the run or its model folder
    assert fp == model_fingerprint(_model_folder(tmp_path / "copy"), settings)  # content, not place
    assert fp != model_fingerprint(run, {**settings, "object_mask_threshold": 0.5})
    assert fp != model_fingerprint(_model_folder(tmp_path / "b", b"w" * 999 + b"x"), settings)


def test_fingerprint_of_a_loaded_pipeline_follows_its_weights():
    import torch

    from modise.dicom.uids import model_fingerprint
    from modise.model import build_model
    from modise.pipeline import ModisePipeline

    pipe = ModisePipeline(build_model("m-odise", "tiny", random_weights=True), device="cpu")
    settings = pipe.settings().record()
    fp = model_fingerprint(pipe, settings)
    assert fp == model_fingerprint(pipe, settings)
    with torch.no_grad():
        next(pipe.model.trainable_parameters()).add_(1.0)
    assert model_fingerprint(pipe, settings) != fp


@pytest.mark.parametrize("name, code", [
    ("mass", "4147007"), ("circumscribed_mass", "4147007"), ("Spiculated Mass", "4147007"),
    ("Suspicious Calcification", "309587003"), ("microcalcifications", "309587003"),
    ("Architectural Distortion", "129792006"), ("asymmetry", "129790003"), ("Focal Asymmetry", "129789007"),
    ("nodule", "27925004"), ("Benign", "52988006"), ("BI-RADS 4", "52988006")])
def test_codes_by_class_name_are_snomed_concepts(name, code):
    from pydicom.sr._snomed_dict import mapping

    from modise.dicom.codes import property_codes

    category, kind = property_codes(Category(1, name))
    assert (category.value, category.scheme_designator) == ("49755003", "SCT")  # CID 7150
    assert (kind.value, kind.scheme_designator) == (code, "SCT")
    sct = mapping["SCT"]  # pydicom's SNOMED CT dictionary: value -> SNOMED RT id; and the meaning pydicom knows
    assert code in sct and category.value in sct
    from pydicom.sr._concepts_dict import concepts

    meanings = {m.lower() for entry in concepts["SCT"].values() for v, (m, _) in entry.items() if v == code}
    assert kind.meaning.lower() in meanings


def test_codes_overridden_by_the_dataset_category_and_carried_by_its_json():
    from modise.dicom.codes import property_codes

    override = {"property_type": {"value": "108369006", "scheme": "SCT", "meaning": "Neoplasm"}}
    cat = Category.from_json({"id": 2, "name": "Malignant", "dicom": override})
    assert Category.from_json(json.loads(json.dumps(cat.to_json()))).dicom == override  # panoptic.json -> model
    assert "dicom" not in Category(1, "mass").to_json()  # absent unless given
    category, kind = property_codes(cat)
    assert (kind.value, kind.meaning, category.value) == ("108369006", "Neoplasm", "49755003")
    with pytest.raises(ModiseError, match="Category 'Malignant': dicom.property_type needs"):
        property_codes(Category(2, "Malignant", dicom={"property_type": {"value": "1"}}))
    with pytest.raises(ModiseError, match="Category 'x': 'dicom' must be an object with property_type"):
        property_codes(Category(2, "x", dicom={"type": {}}))
