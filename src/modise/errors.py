"""User-facing errors: one clear sentence, no traceback (the CLI prints ``str(err)``).

Exit codes (``modise`` command): 0 success, 1 a :class:`ModiseError`, 2 a bad option or
argument (Typer/Click, or a :class:`UsageError`), 3 :class:`PartialFailure` (some inputs failed, the rest were written),
130 interrupted (Ctrl-C).
"""

from typer import BadParameter


class ModiseError(Exception):
    """An error caused by the user's input or environment, explained in one sentence."""

    exit_code = 1


class UsageError(ModiseError, BadParameter):
    """A bad option value that only its context shows (the dataset, the run, the machine): Click's usage
    error, so one sentence naming the option and exit 2, raised before anything is read or written."""

    exit_code = 2

    def __init__(self, option: str, message: str) -> None:
        BadParameter.__init__(self, message, param_hint=f"'{option}'")
        self.option = option

    def __str__(self) -> str:
        return self.format_message()


class PartialFailure(ModiseError):
    """The command finished and wrote its output, but some inputs failed (named in the message)."""

    exit_code = 3


class TrainingInterrupted(ModiseError):
    """Training stopped by Ctrl-C; the message says where the checkpoint is and how to resume."""

    exit_code = 130


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
