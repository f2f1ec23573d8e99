"""DICOM in and out: the PACS over DICOMweb (``dicomweb.py``); below ``engine/``, used by prediction and the app."""
