"""Command line of the app: ``python -m fssam.app --checkpoint ...`` serves the page on
127.0.0.1 (``--host`` to change it; ``--port 0`` takes a free port)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import socket
from collections.abc import Sequence
from pathlib import Path

from fssam.app.logic import DEMO_CHECKPOINT, METHODS, ModelSpec

# no usage reports from Gradio (the app runs offline)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fssam.app", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default=DEMO_CHECKPOINT,
                        help="our last.pt/best.pt or an authors' file (the default is "
                             "make demo's); another can be loaded in the page")
    parser.add_argument("--checkpoint-format", choices=("ours", "release"), default="ours")
    parser.add_argument("--method", choices=METHODS, default="FSSAM",
                        help="the method of a release checkpoint (ours carry theirs)")
    parser.add_argument("--model-flags", default="",
                        help="predict.py's model flags as one string, e.g. '--override "
                             "sam2=large model.sam2_checkpoint=pretrained/sam2_hiera_large.pt'")
    parser.add_argument("--sam2-config", help="as predict.py's: for a model without SAM 2 "
                        "(HMNet), the SAM 2 that turns prompts into masks")
    parser.add_argument("--sam2-checkpoint", help="as predict.py's (the weights of --sam2-config)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, ...")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port; 0 takes a free one")
    parser.add_argument("--output", type=Path, default=Path("outputs/app"),
                        help="each run writes a folder of masks, overlays and a zip here")
    return parser


def free_port(host: str) -> int:
    """A port the system says is free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import gradio as gr  # after the environment above is set

    from fssam.app.layout import AppContext, build_page

    flags = " ".join([args.model_flags] + [f"--{name.replace('_', '-')} {shlex.quote(value)}"
                                           for name in ("sam2_config", "sam2_checkpoint")
                                           if (value := getattr(args, name)) is not None])
    spec = ModelSpec(args.checkpoint, args.checkpoint_format, args.method, flags.strip(),
                     args.device)
    context = AppContext(spec, args.output.resolve())
    logging.getLogger(__name__).info("%s", context.load(spec))
    args.output.mkdir(parents=True, exist_ok=True)
    port = free_port(args.host) if args.port == 0 else args.port
    print(f"FSSAM app: http://{args.host}:{port}/", flush=True)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts
    build_page(context).queue().launch(
        server_name=args.host, server_port=port, theme=theme, quiet=True,
        allowed_paths=[str(context.output)], max_file_size="200mb")
    return 0
