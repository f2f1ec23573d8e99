"""Pictures for people: the class palette, overlays (image | ground truth | prediction, the
paper's Fig. 2 views) and figures (IoU-threshold sweeps). Every command draws through here, so
a class has one colour in ``evaluate``, ``predict``, ``demo`` and ``serve``."""
