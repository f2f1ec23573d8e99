"""What a class is, in codes a DICOM viewer understands: SEG Segmented Property Category / Type and the
SR finding category / type.

Category: always SCT 49755003 "Morphologically abnormal structure" (CID 7150 Segmentation Property
Categories). Type, chosen by words in the category's name (first rule that matches):

=========================  ==========  =====================================  ==========================
name contains              SCT code    meaning                                context group (PS3.16)
=========================  ==========  =====================================  ==========================
"distortion"               129792006   Architectural distortion of breast     CID 6014 / 6016 / 6054
"focal asym..."            129789007   Focal asymmetric breast tissue         CID 6016 / 6054
"asymmetr..."              129790003   Asymmetric breast tissue               CID 6016 / 6054
"calcif..."                309587003   Calcification of breast                CID 6054
"mass"                     4147007     Mass                                   CID 7151 / 7159
"nodule"                   27925004    Nodule                                 CID 7151 / 7159
anything else              52988006    Lesion                                 CID 7151 / 7159
=========================  ==========  =====================================  ==========================

CID 7151 (Segmentation Property Types) is a baseline group (PS3.3 C.8.20.2 Segment Description Macro:
BCID 7151) and holds no breast-specific finding but Mass / Lesion, so distortion, asymmetry and
calcification come from the breast imaging groups (CID 6054 Breast Imaging Findings, CID 6014/6016 of
the Mammography CAD SR). Every code above is checked against pydicom's SNOMED CT dictionary in the tests.

Override per class in the dataset's ``panoptic.json`` (carried into the model's ``categories.json``):
``{"id": 1, "name": "BI-RADS 5", ..., "dicom": {"property_type": {"value": "108369006", "scheme": "SCT",
"meaning": "Neoplasm"}}}``; ``property_category`` (same shape) is optional.
"""

from __future__ import annotations

from typing import Any

from modise.data.panoptic import Category
from modise.errors import ModiseError

ABNORMAL = ("49755003", "SCT", "Morphologically abnormal structure")  # CID 7150
LESION = ("52988006", "SCT", "Lesion")  # CID 7151
# (words that must all appear in the lower-cased name, (code value, scheme, meaning)); first match wins
RULES: tuple[tuple[tuple[str, ...], tuple[str, str, str]], ...] = (
    (("distortion",), ("129792006", "SCT", "Architectural distortion of breast")),
    (("focal", "asymmetr"), ("129789007", "SCT", "Focal asymmetric breast tissue")),
    (("asymmetr",), ("129790003", "SCT", "Asymmetric breast tissue")),
    (("calcif",), ("309587003", "SCT", "Calcification of breast")),
    (("mass",), ("4147007", "SCT", "Mass")),
    (("nodule",), ("27925004", "SCT", "Nodule")),
)
OVERRIDE_KEY = "dicom"
OVERRIDE_FIELDS = ("property_type", "property_category")


def property_codes(category: Category) -> tuple[Any, Any]:
    """(Segmented Property Category, Segmented Property Type) of a class, as highdicom ``CodedConcept``s."""
    from highdicom.sr import CodedConcept

    override = getattr(category, "dicom", None) or {}
    if not isinstance(override, dict) or set(override) - set(OVERRIDE_FIELDS):
        raise ModiseError(f"Category '{category.name}': '{OVERRIDE_KEY}' must be an object with "
                          f"{' and/or '.join(OVERRIDE_FIELDS)}, not {override!r}.")
    codes = {"property_category": ABNORMAL, "property_type": type_by_name(category.name)}
    for key, value in override.items():
        codes[key] = _code_tuple(category, key, value)
    return tuple(CodedConcept(value=v, scheme_designator=s, meaning=m)
                 for v, s, m in (codes["property_category"], codes["property_type"]))


def type_by_name(name: str) -> tuple[str, str, str]:
    """(value, scheme, meaning) of the property type a class name says (see the module's table)."""
    words = name.lower().replace("_", " ").replace("-", " ")
    for needed, code in RULES:
        if all(w in words for w in needed):
            return code
    return LESION


def _code_tuple(category: Category, key: str, value: Any) -> tuple[str, str, str]:
    if not (isinstance(value, dict) and all(isinstance(value.get(k), str) and value[k].strip()
                                            for k in ("value", "scheme", "meaning"))):
        raise ModiseError(f"Category '{category.name}': {OVERRIDE_KEY}.{key} needs non-empty 'value', 'scheme' and "
                          f"'meaning' strings (e.g. {{\"value\": \"4147007\", \"scheme\": \"SCT\", \"meaning\": \"Mass\"}}), "
                          f"not {value!r}.")
    return value["value"].strip(), value["scheme"].strip(), value["meaning"].strip()[:64]
