"""README.md's prose: links, named paths, config values, model map and error messages exist.

The commands of its ``bash`` blocks are checked in test_readme.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from fssam.engine.config import compose_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LANGUAGES = ("bash", "text")
GENERIC = {"key=value", "--key"}  # prose about the override syntax itself
GROUPS = ("dataset", "sam2", "model", "trainer")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block."""
    return re.findall(r"^ *```(\w*)\n(.*?)^ *```", text, flags=re.M | re.S)


def test_code_blocks_are_labelled_and_links_resolve():
    text = README.read_text()
    languages = [language for language, _ in fenced_blocks(text)]
    assert languages and set(languages) <= set(LANGUAGES), languages
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    slugs = {re.sub(r"[^\w -]", "", h.lower()).replace(" ", "-")
             for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}
    links = re.findall(r"\]\(#([\w-]+)\)", text)
    assert len(links) > 10 and set(links) <= slugs, set(links) - slugs


def inline_spans(text: str) -> list[str]:
    """Inline code of the README's prose and tables (fenced blocks removed)."""
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def test_paths_named_in_the_readme_exist():
    roots = {p.name for p in REPO.iterdir()} - {"data", "pretrained", "exp", "outputs", ".venv"}
    named = [s.rstrip("/") for s in inline_spans(README.read_text())
             if re.fullmatch(r"[\w.+-]+(/[\w.+-]+)*/?", s) and s.split("/")[0] in roots]
    assert len(named) > 15
    assert not [p for p in named if not (REPO / p).exists()]


def test_config_values_named_in_the_readme_compose():
    """Inline ``group=option``, ``key=value`` and ``group.key`` of the prose exist."""
    spans = [s.strip("'") for s in inline_spans(README.read_text())]
    word = r"[a-z_][\w.]*(=[\w./\[\],-]*|=\.\.\.)?"
    checked = [span for span in spans if span not in GENERIC
               and all(re.fullmatch(word, w) for w in span.split())
               and any("=" in w or w.split(".")[0] in GROUPS for w in span.split())]
    for span in checked:
        # compose raises on an unknown group, option or key; the span's keys must exist in
        # the config its own overrides compose (`model=hmnet model.grid`)
        words = span.split()
        placeholder = [w for w in words if re.fullmatch(r"[\w.]+=(\.\.\.|[A-Z])", w)]
        composed = compose_config(
            "test", [w for w in words if "=" in w and w not in placeholder])
        keys = [w for w in words if "=" not in w] + [w.split("=")[0] for w in placeholder]
        assert all(OmegaConf.select(composed, k, default="?") != "?" for k in keys), span
    assert len(checked) > 20


def test_model_map_names_exist():
    """Each ``file``: ``name``, ... of the model table is defined in that file."""
    pairs = []
    for row in README.read_text().splitlines():
        for path, names in re.findall(r"`(fssam/[\w/]+\.py)`: ((?:`\w+`(?:, )?)+)", row):
            source = (REPO / path).read_text()
            pairs += [(path, n) for n in re.findall(r"`(\w+)`", names)
                      if not re.search(rf"^(def|class) {n}\b", source, flags=re.M)]
    assert not pairs


def test_troubleshooting_messages_match_the_code():
    """The error quoted first in each troubleshooting entry is still worded so in the code
    (its runs of three or more plain words; Hydra's and OmegaConf's own messages included)."""
    import hydra
    import omegaconf

    section = README.read_text().split("## Troubleshooting")[1].split("\n## ")[0]
    quoted = [re.findall(r"`([^`]+)`", line)[0] for line in section.splitlines()
              if line.startswith("- `")]
    folders = (REPO / "fssam", REPO / "scripts", Path(hydra.__file__).parent,
               Path(omegaconf.__file__).parent)
    corpus = "\n".join(p.read_text() for d in folders for p in d.rglob("*.py"))
    runs = []
    for message in quoted:
        run: list[str] = []
        for word in message.split() + ["<end>"]:
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9+]*", word) and word != "WxH":
                run.append(word)
                continue
            runs += [" ".join(run)] if len(run) >= 3 else []
            run = []
    missing = [r for r in runs if r not in corpus]
    assert len(quoted) > 12 and len(runs) > 10 and not missing, missing
