"""DICOM Segmentation objects (highdicom) for predictions on DICOM mammograms.

One SEG per source image, one binary segment per lesion class, referencing the source
image (same study, patient, frame of reference), so OHIF / 3D Slicer show it over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modise.data.panoptic import Category


def build_dicom_seg(
    source, class_masks: np.ndarray, categories: Sequence[Category], *, series_number: int = 900, software: str = "modise"
):
    """A highdicom ``Segmentation`` of ``source`` (pydicom Dataset).

    class_masks: bool [K, H, W], one plane per lesion class in ``categories`` order,
    same size as the source pixel data. Empty classes still get a segment (an empty
    frame), so every class is listed and readers see the full legend.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from modise import __version__

    rows, cols = int(source.Rows), int(source.Columns)
    if class_masks.shape[1:] != (rows, cols):
        raise ValueError(f"mask shape {class_masks.shape[1:]} != source image {(rows, cols)}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="M-ODISE", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=cat.name[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"{cat.name} (category {cat.id})"[:64],
        )
        for i, cat in enumerate(categories)
    ]
    # highdicom copies PixelSpacing of a projection image without SliceThickness and then
    # cannot read its own file back; give the measures explicitly (thickness nominal 1 mm).
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
    measures = None
    if spacing:
        measures = hd.PixelMeasuresSequence(
            pixel_spacing=[float(v) for v in spacing], slice_thickness=float(source.get("SliceThickness") or 1.0)
        )
    pixel_array = np.moveaxis(class_masks.astype(bool), 0, -1)[None]  # (1, H, W, K)
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="modise",
        manufacturer_model_name="M-ODISE",
        software_versions=f"{software} {__version__}",
        device_serial_number="0",
        omit_empty_frames=False,
        pixel_measures=measures,
        content_label="LESIONS",
        content_description="M-ODISE breast lesion segmentation",
    )


def write_dicom_seg(path: str | Path, source, class_masks: np.ndarray, categories: Sequence[Category]) -> Path:
    """Build the SEG and write it atomically to ``path``."""
    import io

    from modise.outputs import write_bytes_atomic

    seg = build_dicom_seg(source, class_masks, categories)
    buf = io.BytesIO()
    seg.save_as(buf)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)
