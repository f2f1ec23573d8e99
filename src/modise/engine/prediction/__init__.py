"""Prediction on new mammograms: input discovery, the predictor, DICOM SEG and overlays."""
