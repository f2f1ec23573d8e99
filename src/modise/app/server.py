"""The Gradio app: :func:`build_app` composes the three tabs; :func:`serve` runs it until Ctrl-C /
SIGTERM, then removes the temporary folder that held uploads and results."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from modise.app.state import AppState
from modise.errors import ModiseError

TITLE = "modise: M-ODISE lesion segmentation and MAM-E synthesis"


def _configure_environment(state: AppState) -> None:
    # Gradio reads these when components and routes are created: uploads go to our temp folder,
    # and nothing phones home (analytics, version check).
    state.upload_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(state.upload_dir)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def theme():
    """Gradio's default look with system fonts (the default theme fetches Google fonts)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_app(state: AppState):
    """-> ``gr.Blocks`` with the Segment, Generate and Inpaint tabs (API ``/segment``, ``/generate``, ``/inpaint``)."""
    _configure_environment(state)
    import gradio as gr

    from .generate_tab import build_generate_tab
    from .inpaint_tab import build_inpaint_tab
    from .segment_tab import build_segment_tab

    s = state.settings
    runs = len(state.run_paths)
    segmenter = (f"{runs} trained run(s)" if runs else "no trained run") + (
        f" + a random-weight {s.preset} ({s.size}, untrained)" if s.random_weights else "")
    mame = f"random weights, offline ({s.size})" if s.random_weights else "trained / downloaded weights"
    # Gradio's copies of uploads and results are deleted by age too (job_dir prunes our own)
    keep = s.keep_files_s
    with gr.Blocks(title="modise", delete_cache=(max(60, min(600, keep)), keep)) as demo:
        gr.Markdown(f"## {TITLE}\nSegmentation: {segmenter}. MAM-E: {mame}. Research use only, not for diagnosis.")
        with gr.Tabs():
            with gr.Tab("Segment", id="segment"):
                build_segment_tab(state)
            with gr.Tab("Generate", id="generate"):
                build_generate_tab(state)
            with gr.Tab("Inpaint", id="inpaint"):
                build_inpaint_tab(state)
    return demo


def launch(demo, state: AppState, host: str = "127.0.0.1", port: int | None = None, share: bool = False) -> str:
    """Start serving in the background; return the local URL."""
    demo.queue(default_concurrency_limit=1)
    _, url, share_url = demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True, show_error=True,
        max_file_size=state.settings.max_upload_bytes, theme=theme(), footer_links=["api"],
        allowed_paths=[str(state.tmp_dir)],
    )
    server = getattr(demo, "server", None)
    if server is not None and hasattr(server, "config"):
        # open event streams (browsers, clients) would otherwise hold shutdown for gradio's 5 s join
        server.config.timeout_graceful_shutdown = 1
    return share_url or url


def check_port_free(host: str, port: int | None) -> None:
    """One sentence for a taken port (Gradio's own error advises calling ``launch()`` differently)."""
    import socket

    if port is None:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise ModiseError(f"Port {port} on {host} is in use; pass another --port, or none to take the next free one.") from None


def serve(state: AppState, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run the app until interrupted (Ctrl-C or SIGTERM); the temp folder is removed on the way out."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    demo = None
    try:
        check_port_free(host, port)
        demo = build_app(state)
        url = launch(demo, state, host, port, share)
        state.warm_up()
        if on_ready:
            on_ready(url)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    except OSError as e:  # e.g. no free port in Gradio's range; its text advises calling launch(): keep the first sentence
        reason = str(e).split(". ")[0].rstrip(".")
        raise ModiseError(f"Could not start the server on {host}:{port or 'auto'}: {reason}; pass another --port.") from None
    finally:
        if demo is not None:
            demo.close(verbose=False)
        state.cleanup()
        signal.signal(signal.SIGTERM, previous)
