"""Prediction on new mammograms (``modise predict``): input discovery, batched prediction through
:class:`modise.pipeline.ModisePipeline` with a writer thread, DICOM SEG and SR (:mod:`modise.dicom`)."""
