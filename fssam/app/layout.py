"""The app's page: Gradio components wired to ``fssam.app.logic`` and ``fssam.app.views``.

Every handler returns a dict of component updates; an error becomes a message in the page
(the support's line, the model line or the run line), never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from fssam.app import logic, views
from fssam.app.uploads import UploadError
from fssam.data.user_images import InputError

log = logging.getLogger(__name__)

INTRO = """# FSSAM: segment a class from a few examples
Upload 1 to 5 **support** images and show the object in each: click on it (and on what is
not it), click two corners of a box, or scribble or paint it in the *Draw* tab. SAM 2 shows
the support mask at once. Then upload one or more **queries** and press **Run**."""
EXPECTED = (InputError, UploadError, FileNotFoundError, ValueError)


@dataclass
class AppContext:
    """The page's model (one for every visitor: a local tool) and output folder."""

    spec: logic.ModelSpec
    output: Path
    loaded: logic.LoadedModel | None = None
    status: str = "no model loaded"

    def load(self, spec: logic.ModelSpec, shots: int = 1) -> str:
        try:
            self.loaded = logic.load_model(spec, shots)
            self.spec, self.status = spec, f"loaded: {self.loaded.description}"
        except Exception as err:  # the page says why; the previous model stays
            hint = (" (make demo writes it, or give --checkpoint)"
                    if spec.checkpoint == logic.DEMO_CHECKPOINT else "")
            self.status = f"cannot load the model{hint}: {message(err)}"
        return self.status


def message(err: Exception) -> str:
    if isinstance(err, EXPECTED):
        return f"⚠ {err}"
    log.exception("unexpected error in the app")
    return f"⚠ unexpected error: {type(err).__name__}: {err} (details in the server log)"


@dataclass
class Slot:
    """The components of one support."""

    column: Any
    file: Any
    tool: Any
    view: Any
    draw: Any
    kind: Any
    clear: Any
    info: Any


@dataclass
class Page:
    context: AppContext
    state: Any = None
    slots: list[Slot] = field(default_factory=list)

    def shown(self, states: dict, i: int, extra: dict | None = None) -> dict:
        """Updates showing support ``i`` as it is now, then ``extra`` ones."""
        slot, support = self.slots[i], states.get(i)
        return {self.state: states, slot.view: views.preview(support),
                slot.info: views.describe(support), **(extra or {})}

    def guarded(self, i: int, fn: Callable[..., dict]) -> Callable[..., dict]:
        """``fn``'s updates, or the error as the support's line (``fn``'s signature is kept:
        Gradio reads it to pass event data)."""
        @functools.wraps(fn)
        def handler(states: dict, *args: Any) -> dict:
            try:
                return fn(states, *args)
            except Exception as err:  # shown in the page, never raised to Gradio
                return {self.state: states, self.slots[i].info:
                        f"{views.describe(states.get(i))}\n\n{message(err)}"}
        return handler


def _slot_events(page: Page, i: int) -> None:
    slot, ctx = page.slots[i], page.context

    def upload(states: dict, path: str | None) -> dict:
        states.pop(i, None)
        try:
            states[i] = logic.new_support(path)
        except UploadError as err:
            return page.shown(states, i, {slot.info: f"⚠ {err}"})
        background = {"background": states[i].image, "layers": [], "composite": None}
        return page.shown(states, i, {slot.draw: background})

    def remove(states: dict) -> dict:
        states.pop(i, None)
        return page.shown(states, i)

    def click(states: dict, tool: str, evt: gr.SelectData) -> dict:
        if i not in states:
            raise InputError("upload the support image first")
        logic.add_click(states[i], *evt.index[:2], tool)
        logic.update_mask(ctx.loaded, states[i])
        return page.shown(states, i)

    def draw(states: dict, value: dict | None, kind: str) -> dict:
        if i not in states:
            raise InputError("upload the support image first")
        layers = (value or {}).get("layers") or []
        logic.set_drawing(states[i], layers[0] if layers else None, kind)
        logic.update_mask(ctx.loaded, states[i])
        return page.shown(states, i)

    def clear(states: dict) -> dict:
        if i in states:
            logic.clear_prompt(states[i])
        return page.shown(states, i, {slot.draw: None if i not in states else {
            "background": states[i].image, "layers": [], "composite": None}})

    outputs = [page.state, slot.view, slot.info, slot.draw]
    slot.file.upload(page.guarded(i, upload), [page.state, slot.file], outputs)
    slot.file.clear(page.guarded(i, remove), [page.state], outputs)
    slot.view.select(page.guarded(i, click), [page.state, slot.tool], outputs)
    slot.draw.input(page.guarded(i, draw), [page.state, slot.draw, slot.kind], outputs)
    slot.kind.change(page.guarded(i, draw), [page.state, slot.draw, slot.kind], outputs)
    slot.clear.click(page.guarded(i, clear), [page.state], outputs)


def _support_slot(i: int) -> Slot:
    with gr.Column(visible=i == 0, min_width=320) as column:
        file = gr.File(label=f"support {i + 1}: image", elem_id=f"support{i}_file")
        with gr.Tab("Click"):
            tool = gr.Radio(list(logic.TOOLS), value=logic.OBJECT, show_label=False,
                            elem_id=f"support{i}_tool")
            view = gr.Image(label=f"support {i + 1}: click to prompt", interactive=False,
                            type="numpy", height=300, elem_id=f"support{i}_view")
        with gr.Tab("Draw"):
            kind = gr.Radio(list(logic.DRAWINGS), value=logic.SCRIBBLE, label="the drawing is",
                            elem_id=f"support{i}_kind")
            draw = gr.ImageEditor(type="numpy", label="scribble or paint", sources=(), height=380,
                                  brush=gr.Brush(colors=["#ff8c00"], color_mode="fixed"),
                                  elem_id=f"support{i}_draw")
        clear = gr.Button("clear prompt", size="sm", elem_id=f"support{i}_clear")
        info = gr.Markdown("no image yet", elem_id=f"support{i}_info")
    return Slot(column, file, tool, view, draw, kind, clear, info)


def build_page(context: AppContext) -> gr.Blocks:
    """The Blocks of the app (not launched)."""
    with gr.Blocks(title="FSSAM") as blocks:
        page = Page(context, gr.State({}))
        gr.Markdown(INTRO)
        with gr.Accordion("Model", open=False):
            with gr.Row():
                checkpoint = gr.Textbox(context.spec.checkpoint, label="checkpoint",
                                        elem_id="checkpoint", scale=3)
                fmt = gr.Radio(["ours", "release"], value=context.spec.checkpoint_format,
                               label="format")
                method = gr.Radio(list(logic.METHODS), value=context.spec.method,
                                  label="method of a release checkpoint")
            flags = gr.Textbox(context.spec.flags, label="model flags, as predict.py takes "
                               "them (e.g. --sam2-config ... --sam2-checkpoint ...)")
            load = gr.Button("Load model", elem_id="load")
        model_info = gr.Markdown(context.status, elem_id="model_info")
        count = gr.Slider(1, logic.MAX_SUPPORTS, value=1, step=1, label="supports",
                          elem_id="count")
        with gr.Row():
            page.slots = [_support_slot(i) for i in range(logic.MAX_SUPPORTS)]
        queries = gr.File(file_count="multiple", label="queries", elem_id="queries")
        run = gr.Button("Run", variant="primary", elem_id="run")
        status = gr.Markdown("", elem_id="status")
        gallery = gr.Gallery(label="results", columns=4, height="auto", object_fit="contain",
                             preview=False, elem_id="gallery")
        files = gr.File(label="masks and zip", file_count="multiple", interactive=False,
                        elem_id="files")
        for i in range(logic.MAX_SUPPORTS):
            _slot_events(page, i)
        count.change(lambda n: [gr.update(visible=i < n) for i in range(logic.MAX_SUPPORTS)],
                     count, [s.column for s in page.slots])
        _model_events(page, load, [checkpoint, fmt, method, flags], model_info)
        _run_events(page, run, count, queries, [status, gallery, files])
    return blocks


def _model_events(page: Page, load: Any, controls: list, model_info: Any) -> None:
    ctx = page.context
    views_out = [c for s in page.slots for c in (s.view, s.info)]

    def reload(states: dict, checkpoint: str, fmt: str, method: str, flags: str,
               progress: gr.Progress = gr.Progress()) -> list:
        progress(0.1, desc="loading the model")
        spec = logic.ModelSpec(checkpoint.strip(), fmt, method, flags, ctx.spec.device)
        text = ctx.load(spec, max(1, len(states)))
        for i, support in states.items():
            try:
                logic.update_mask(ctx.loaded, support)
            except Exception as err:  # the support keeps its prompt; its line says why
                support.notes = [*support.notes[-2:], message(err)]
        shown = [v for i in range(logic.MAX_SUPPORTS)
                 for v in (views.preview(states.get(i)), views.describe(states.get(i)))]
        return [states, text, *shown]

    load.click(reload, [page.state, *controls], [page.state, model_info, *views_out])


def _run_events(page: Page, run: Any, count: Any, queries: Any, outputs: list) -> None:
    ctx = page.context
    status, gallery, files = outputs

    def segment(states: dict, n: int, paths: list | None,
                progress: gr.Progress = gr.Progress()) -> dict:
        try:
            supports = [states.get(i) for i in range(int(n))]
            loaded = ctx.loaded
            if loaded is None:
                raise InputError(f"no model: {ctx.status}")
            if loaded.spec.checkpoint_format == "release" and loaded.shots != len(supports):
                progress(0.05, desc=f"loading the model for {len(supports)} supports")
                ctx.load(loaded.spec, len(supports))
                loaded = ctx.loaded
            result = logic.run(loaded, supports, paths or [], ctx.output,
                               lambda f, text: progress(f, desc=text))
        except Exception as err:  # shown in the page
            return {status: message(err)}
        count_text = f"{len(result.overlays)} quer{'y' if len(result.overlays) == 1 else 'ies'}"
        return {status: f"{count_text} in {result.seconds:.2f} s · {result.folder}",
                gallery: result.overlays, files: [str(p) for p in result.files]}

    run.click(segment, [page.state, count, queries], outputs)
