"""``python -m modise.baseline.nnunet_worker SPEC.json``: the nnU-Net half of ``modise baseline nnunet``.

Runs in its own process because nnU-Net 2.x reads its folders (``nnUNet_raw``,
``nnUNet_preprocessed``, ``nnUNet_results``) from the environment once, at import; the parent
(:mod:`modise.baseline.nnunet_run`) points them inside the baseline folder. Steps, each skipped
when its result is there: nnU-Net's fingerprint + planning + preprocessing (its Python API, as
``nnUNetv2_plan_and_preprocess``), then per fold nnU-Net's trainer (resumed from
``checkpoint_latest.pth``) and its predictor on the held-out fold with softmax probabilities,
turned into panoptic segments (connected components) in ``fold<k>/predictions``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

PLANS = "nnUNetPlans"
PREPROCESSED_MARK = "modise_preprocessed.json"
ERROR_EXIT = 3  # a user-facing sentence was written to spec["error_file"]


class WorkerError(Exception):
    """A problem the user can fix, in one sentence (handed to the parent through the error file)."""


def trainer_class(name: str) -> type:
    """nnU-Net's trainer ``name`` from its package (as ``nnUNetv2_train -tr`` finds it) or modise's variants."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                      "nnunetv2.training.nnUNetTrainer")
    if cls is None:
        from modise.baseline import nnunet_trainers

        cls = getattr(nnunet_trainers, name, None)
    if cls is None:
        raise WorkerError(f"--trainer {name}: no such nnU-Net trainer (try nnUNetTrainer, nnUNetTrainer_100epochs or nnUNetTrainer_modiseSmoke).")
    return cls


def plan_and_preprocess(spec: dict[str, Any]) -> Path:
    """nnU-Net's fingerprint, plans and preprocessed data for ``spec['configuration']``; modise's folds
    become its ``splits_final.json``. Returns the preprocessed dataset folder."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    raw = Path(os.environ["nnUNet_raw"]) / spec["dataset"]
    pre = Path(os.environ["nnUNet_preprocessed"]) / spec["dataset"]
    if (pre / PREPROCESSED_MARK).is_file():
        return pre
    shutil.rmtree(pre, ignore_errors=True)  # an interrupted preprocessing starts again
    n, dataset_id = spec["processes"], spec["dataset_id"]
    extract_fingerprints([dataset_id], num_processes=n, check_dataset_integrity=True, clean=True, verbose=False, show_progress_bar=False)
    plan_experiments([dataset_id])
    planned = json.loads((pre / f"{PLANS}.json").read_text())["configurations"]
    if spec["configuration"] not in planned:
        raise WorkerError(f"--configuration {spec['configuration']}: nnU-Net planned only {', '.join(sorted(planned))} for this 2D dataset.")
    preprocess([dataset_id], PLANS, configurations=(spec["configuration"],), num_processes=(n,), verbose=False, show_progress_bar=False)
    shutil.copyfile(raw / "splits_final.json", pre / "splits_final.json")
    (pre / PREPROCESSED_MARK).write_text(json.dumps({"configuration": spec["configuration"]}))
    return pre


def model_folder(spec: dict[str, Any]) -> Path:
    """nnU-Net's results folder of this trainer/plans/configuration (its ``<trainer>__<plans>__<configuration>``)."""
    return Path(os.environ["nnUNet_results"]) / spec["dataset"] / f"{spec['trainer']}__{PLANS}__{spec['configuration']}"


def train_fold(spec: dict[str, Any], cls: type, fold: int, device: Any) -> Path:
    """Train fold ``fold`` with nnU-Net's trainer (continued from its latest checkpoint); its final checkpoint."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    fold_dir = model_folder(spec) / f"fold_{fold}"
    final, latest = fold_dir / "checkpoint_final.pth", fold_dir / "checkpoint_latest.pth"
    if final.is_file():
        return final
    pre = Path(os.environ["nnUNet_preprocessed"]) / spec["dataset"]
    plans = load_json(str(pre / f"{PLANS}.json"))
    plans["continue_training"] = latest.is_file()  # what nnunetv2/run/run_training.py:get_trainer_from_args sets
    trainer = cls(plans=plans, configuration=spec["configuration"], fold=fold, dataset_json=load_json(str(pre / "dataset.json")), device=device)
    if latest.is_file():
        trainer.load_checkpoint(str(latest))
    trainer.run_training()
    return final


def predictor_for(cls: type, checkpoint: Path, device: Any) -> Any:
    """nnU-Net's predictor (Gaussian sliding window, mirroring) with the network of ``cls`` and the fold's weights."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    base = checkpoint.parent.parent
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    plans = PlansManager(load_json(str(base / "plans.json")))
    dataset_json = load_json(str(base / "dataset.json"))
    cm = plans.get_configuration(ckpt["init_args"]["configuration"])
    net = cls.build_network_architecture(plans, cm, determine_num_input_channels(plans, cm, dataset_json),
                                         plans.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)
    net.load_state_dict(ckpt["network_weights"])
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, device=device,
                                perform_everything_on_device=device.type == "cuda", allow_tqdm=False)
    predictor.manual_initialization(net, plans, cm, [ckpt["network_weights"]], dataset_json, ckpt["trainer_name"],
                                    ckpt.get("inference_allowed_mirroring_axes"))
    return predictor, plans.image_reader_writer_class()  # an instance of the reader the plans name


def predict_fold(spec: dict[str, Any], cls: type, fold: int, checkpoint: Path, device: Any) -> None:
    """The held-out cases of ``fold`` -> ``fold<k>/predictions`` (canonical panoptic, segments scored)."""
    from modise.baseline.nnunet_export import CASES_JSON, FILE_ENDING
    from modise.baseline.semantic_instances import write_semantic_predictions
    from modise.data.panoptic import Category, load_panoptic_json

    raw = Path(os.environ["nnUNet_raw"]) / spec["dataset"]
    cases = json.loads((raw / CASES_JSON).read_text())["cases"]
    val = json.loads((raw / "splits_final.json").read_text())[fold]["val"]
    pan = load_panoptic_json(spec["data"])
    images = {int(im["id"]): im for im in pan["images"]}
    predictor, reader = predictor_for(cls, checkpoint, device)

    def predictions():
        for case in val:
            im = images[cases[case]["image_id"]]
            pixels, props = reader.read_images([str(raw / "imagesTr" / f"{case}_0000{FILE_ENDING}")])
            seg, probs = predictor.predict_single_npy_array(pixels, props, None, None, True)  # [1, H, W], [C+1, 1, H, W]
            yield {k: im[k] for k in ("id", "file_name", "height", "width") if k in im}, seg[0], probs[:, 0]

    write_semantic_predictions(Path(spec["root"]) / f"fold{fold}" / "predictions", [Category.from_json(c) for c in pan["categories"]],
                               predictions(), spec["min_area"],
                               f"nnU-Net {spec['trainer']} {spec['configuration']} fold {fold}; instances = connected components per class")


def run(spec: dict[str, Any]) -> None:
    import torch

    if os.environ.get("MODISE_THREADS"):
        torch.set_num_threads(int(os.environ["MODISE_THREADS"]))
    device = torch.device("cuda" if spec["device"] == "auto" and torch.cuda.is_available() else
                          "cpu" if spec["device"] == "auto" else spec["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorkerError("--device cuda: no CUDA device is visible to torch; use --device cpu.")
    cls = trainer_class(spec["trainer"])
    plan_and_preprocess(spec)
    if device.type == "cpu":  # augment in the training process: no worker processes on a CPU run (set after planning,
        os.environ.setdefault("nnUNet_n_proc_DA", "0")  # whose VRAM estimate takes torch threads from this variable)
    for fold in spec["folds"]:
        if (Path(spec["root"]) / f"fold{fold}" / "predictions" / "panoptic.json").is_file():
            continue
        print(f"nnU-Net fold {fold}: training {spec['trainer']} ({spec['configuration']}) on {device}", flush=True)
        checkpoint = train_fold(spec, cls, fold, device)
        predict_fold(spec, cls, fold, checkpoint, device)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run(spec)
    except WorkerError as e:
        Path(spec["error_file"]).write_text(str(e))
        return ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
