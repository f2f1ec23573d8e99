"""Datasets: converters to the canonical COCO panoptic layout, readers, phantoms."""
