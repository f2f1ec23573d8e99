"""``modise.data.imageio.read_image``: a real sample mammogram as grey floats in [0, 1]; unreadable files named."""

import numpy as np
import pytest
from PIL import Image

from modise.data.imageio import read_image
from modise.errors import ModiseError


def test_read_real_sample_and_garbage(sample_images, tmp_path):
    img = read_image(sample_images[0])
    assert img.pixels.shape == (512, 512) and img.pixels.dtype == np.float32
    assert 0.0 <= img.pixels.min() and img.pixels.max() <= 1.0 and img.pixels.std() > 0.05
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ModiseError, match="bad.png"):
        read_image(bad)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(sample_images[0].read_bytes()[:500])
    with pytest.raises(ModiseError, match="trunc.jpg"):
        read_image(trunc)
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").pixels.max() == 1.0
