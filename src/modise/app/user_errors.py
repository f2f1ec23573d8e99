"""The tabs' error boundary: user mistakes become a message in the page, the server keeps serving."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Any

from modise.errors import ModiseError


def user_errors(fn: Callable) -> Callable:
    """Turn failures into a message in the page (``gr.Error``); the server keeps serving.

    A :class:`ModiseError` is the user's (bad upload, no mask): its sentence is shown as is.
    Anything else is ours: the traceback goes to the server's stderr, one line to the page.
    """
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ModiseError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            raise gr.Error(f"{fn.__name__} failed: {type(e).__name__}: {e}", print_exception=False) from None

    return wrapper
