"""External baselines beside the paper's six presets: nnU-Net v2 (a semantic model whose
instances are connected components), exported from, trained on and scored against the same
canonical dataset and folds. nnU-Net itself is an optional extra, imported lazily."""
