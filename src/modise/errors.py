"""User-facing errors: one clear sentence, no traceback (the CLI prints ``str(err)``)."""


class ModiseError(Exception):
    """An error caused by the user's input or environment, explained in one sentence."""


class MissingWeightsError(ModiseError):
    """Pretrained weights are neither in a local folder nor in the Hugging Face cache."""

    def __init__(self, model_id: str, what: str = "weights") -> None:
        super().__init__(
            f"Could not load {what} '{model_id}': it is not a local folder and not in the "
            f"Hugging Face cache; download it on a machine with internet "
            f"(`huggingface-cli download {model_id.removeprefix('hf-hub:')}`) or pass a local "
            f"folder, or use --random-weights for an offline architecture."
        )
        self.model_id = model_id
