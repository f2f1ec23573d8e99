"""modise: M-ODISE panoptic segmentation of breast lesions and MAM-E mammogram synthesis."""

__version__ = "0.1.0"
