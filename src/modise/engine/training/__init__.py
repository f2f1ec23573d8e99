"""Training on Lightning: augmentation, data module, module, schedule, train and cross-validation."""
