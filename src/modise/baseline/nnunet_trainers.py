"""nnU-Net trainer variants modise adds (imports nnU-Net at module level: only the nnU-Net worker
process imports this). nnU-Net's own variants (``nnUNetTrainer_5epochs``, ...) are found in its package.

The hyper-parameters are the attributes nnU-Net's ``nnUNetTrainer.__init__`` sets
(nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py: num_epochs, num_iterations_per_epoch,
num_val_iterations_per_epoch); subclasses change them after ``super().__init__``, as nnU-Net's
``variants/training_length`` trainers do."""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans


class nnUNetTrainer_modiseSmoke(nnUNetTrainer):
    """A few iterations of a narrow U-Net (at most 16 channels per stage): checks the whole nnU-Net
    path on CPU in seconds; its numbers mean nothing."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 5
        self.num_val_iterations_per_epoch = 1
        self.initial_lr = 3e-2

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        kwargs = dict(configuration_manager.network_arch_init_kwargs)
        kwargs["features_per_stage"] = [min(int(f), 16) for f in kwargs["features_per_stage"]]
        return get_network_from_plans(configuration_manager.network_arch_class_name, kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
                                      num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision)
