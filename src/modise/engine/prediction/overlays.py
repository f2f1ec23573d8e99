"""Re-export of :mod:`modise.viz.overlays` and the palette, for callers not yet switched
(``app/views.py``); new code imports from :mod:`modise.viz`."""

from modise.viz.overlays import figure2, heatmap_view, instance_view, panoptic_view
from modise.viz.palette import CLASS_COLOURS, class_colour

__all__ = ["CLASS_COLOURS", "class_colour", "figure2", "heatmap_view", "instance_view", "panoptic_view"]
