"""One DICOM reader: `mame prepare` scales `data.imageio.dicom_values` (modality + VOI LUT, MONOCHROME1)
by MAM-E's vendor saturation, on real DICOM files written with pydicom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_voi_lut

from modise.data.imageio import dicom_values, read_dicom, stored_max
from modise.synthesis.mame_image import prepare_image
from tests.data_fixtures import write_dicom

RAMP = np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (96, 1))  # 12-bit, 96x64, left to right


def _frame(path, vendor):
    return prepare_image(path, {"vendor": vendor, "laterality": "L", "view": "CC"}, side=64).pixels


@pytest.mark.parametrize("vendor,saturation", [("siemens", 3500.0), ("hologic", 4095.0)])
def test_vendor_saturation_applies_to_the_raw_stored_values(tmp_path, vendor, saturation):
    path = write_dicom(tmp_path / "a.dcm", RAMP)
    values = dicom_values(pydicom.dcmread(path))
    assert np.array_equal(values, RAMP.astype(np.float64))  # no window: the stored values themselves
    frame = _frame(path, vendor)
    # 96x64 -> short side 64 already; centre crop keeps every column
    want = np.clip(np.rint(RAMP[0] / saturation * 255), 0, 255)
    assert np.abs(frame[32].astype(int) - want).max() <= 1
    assert (frame[32, RAMP[0] >= 3500] == 255).all() == (vendor == "siemens")


def test_saturation_comes_after_the_voi_window_as_in_mame(tmp_path):
    path = write_dicom(tmp_path / "w.dcm", RAMP, window=(1000, 2000))
    ds = pydicom.dcmread(path)
    voi = apply_voi_lut(ds.pixel_array, ds).astype(np.float64)  # MAM-E: from_dicom2png.py:34
    assert np.allclose(dicom_values(ds), voi)
    frame = _frame(path, "siemens")
    assert np.abs(frame[32].astype(int) - np.clip(np.rint(voi[0] / 3500 * 255), 0, 255)).max() <= 1
    # the same values feed read_dicom, scaled by the window's stored range
    assert np.allclose(read_dicom(path).pixels, voi / stored_max(ds), atol=1e-6)


def test_monochrome1_is_inverted_in_the_stored_range_before_saturation(tmp_path):
    path = write_dicom(tmp_path / "m1.dcm", 4095 - RAMP, photometric="MONOCHROME1")
    assert np.array_equal(dicom_values(pydicom.dcmread(path)), RAMP.astype(np.float64))
    assert np.array_equal(_frame(path, "hologic"), _frame(write_dicom(tmp_path / "m2.dcm", RAMP), "hologic"))
    assert np.allclose(read_dicom(path).pixels[0], RAMP[0] / 4095, atol=1e-6)  # dense tissue bright


def test_unreadable_dicom_is_named(tmp_path):
    from modise.errors import ModiseError

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(ModiseError, match="bad.dcm: not a readable DICOM image"):
        prepare_image(bad, {})
