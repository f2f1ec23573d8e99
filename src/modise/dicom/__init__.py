"""DICOM objects modise writes for DICOM inputs, and their identity (DESIGN.md 4b).

``seg.py`` one Segmentation (SEG) per source image, ``sr.py`` one TID 1500 measurement report (SR) per
source image, both built with highdicom from the same :class:`~modise.dicom.findings.Finding` list;
``uids.py`` derived (idempotent) UIDs and the model fingerprint they are derived from; ``codes.py`` the
SNOMED CT / DCM codes of a class; ``dicomweb.py`` the PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS). Below ``engine/``: prediction and the web app use it.
"""
