import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from modise.data.imageio import read_image
from modise.data.panoptic import id2rgb, read_id_png, rgb2id, write_id_png
from modise.errors import ModiseError
from modise.outputs import output_dir, write_json_atomic


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "modise", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "modise" in out.stdout.lower()


def test_id_rgb_roundtrip(tmp_path):
    ids = np.array([[0, 1, 255], [256, 65536 + 7, 300000]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    write_id_png(tmp_path / "a.png", ids)
    assert np.array_equal(read_id_png(tmp_path / "a.png"), ids)


def test_output_dir_refuses_non_empty_and_is_atomic(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (out / ".modise-output").touch()  # written by modise: --overwrite may replace it
    with pytest.raises(ModiseError, match="--overwrite"):
        with output_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with output_dir(out, overwrite=True) as stage:
            (stage / "new.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (out / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging debris
    with output_dir(out, overwrite=True) as stage:
        write_json_atomic(stage / "x.json", {"a": np.int64(3)})
    assert json.loads((out / "x.json").read_text()) == {"a": 3}
    assert not (out / "keep.txt").exists()


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
