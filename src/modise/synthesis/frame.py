"""The MAM-E frame of a mammogram and the way back to full resolution.

MAM-E's models saw 512x512 left-facing frames: right breasts mirrored, the short side
resized to 512, the long side centre-cropped (``mame prepare``, :func:`to_frame`).
:class:`Frame` remembers that mapping so a frame-sized result can be resampled onto the
original pixels and blended in at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modise.synthesis.mame_image import to_frame


@dataclass(frozen=True)
class Frame:
    """Mapping of an (H, W) image to its ``side`` x ``side`` frame (mirror, resize, centre crop)."""

    H: int
    W: int
    side: int
    flip: bool

    @property
    def resized(self) -> tuple[int, int]:
        """(rows, cols) of the image after the short side became ``side`` (as :func:`to_frame`)."""
        scale = self.side / min(self.H, self.W)
        return max(self.side, round(self.H * scale)), max(self.side, round(self.W * scale))

    @property
    def offset(self) -> tuple[int, int]:
        """(rows, cols) cropped off the top and the left of the resized image."""
        nh, nw = self.resized
        return (nh - self.side) // 2, (nw - self.side) // 2

    def pixels_per_frame_pixel(self) -> float:
        return min(self.H, self.W) / self.side

    def to_frame(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """(H, W) uint8 -> (side, side) uint8 frame."""
        return to_frame(np.ascontiguousarray(image), self.flip, self.side, order=0 if nearest else 1)

    def frame_coords(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame (row, col) of original pixel centres (PIL's bilinear convention: centres at +0.5)."""
        nh, nw = self.resized
        oy, ox = self.offset
        xs = (self.W - 1 - xs) if self.flip else xs
        fy = (ys + 0.5) * nh / self.H - 0.5 - oy
        fx = (xs + 0.5) * nw / self.W - 0.5 - ox
        return fy, fx

    def region_of(self, frame_mask: np.ndarray, margin: int = 2) -> tuple[slice, slice]:
        """The original-resolution rows/cols covering ``frame_mask``'s bounding box plus ``margin`` frame px."""
        nh, nw = self.resized
        oy, ox = self.offset
        ys, xs = np.nonzero(frame_mask)
        fy0, fy1 = ys.min() - margin, ys.max() + 1 + margin
        fx0, fx1 = xs.min() - margin, xs.max() + 1 + margin
        y0, y1 = int(np.floor((fy0 + oy) * self.H / nh)), int(np.ceil((fy1 + oy) * self.H / nh))
        x0, x1 = int(np.floor((fx0 + ox) * self.W / nw)), int(np.ceil((fx1 + ox) * self.W / nw))
        if self.flip:
            x0, x1 = self.W - x1, self.W - x0
        return slice(max(0, y0), min(self.H, y1)), slice(max(0, x0), min(self.W, x1))

    def sample(self, frame_image: np.ndarray, rows: slice, cols: slice, nearest: bool = False) -> np.ndarray:
        """``frame_image`` resampled onto the original pixels ``[rows, cols]`` (bilinear or nearest)."""
        from scipy.ndimage import map_coordinates

        ys, xs = np.mgrid[rows, cols]
        fy, fx = self.frame_coords(ys.astype(np.float64), xs.astype(np.float64))
        return map_coordinates(np.asarray(frame_image, np.float64), [fy, fx], order=0 if nearest else 1,
                               mode="nearest")
