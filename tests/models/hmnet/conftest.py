"""Shared HMNet test pieces: the release's scan cases (``release_name`` is parametrized over
them) and random scan cases, the release's reference tensors, its weights rebuilt (and
written as a release checkpoint), the parity inputs, and the parity README's probes and
tolerances."""

from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fssam.models.hmnet import ss2d

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "parity_hmnet"
CASES = torch.load(FIXTURES / "scan_cases.pt", weights_only=True)
PIXEL_MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1) * 255
PIXEL_STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1) * 255
SCAN_NAMES = sorted({k.split(".")[0] for k in CASES if k != "meta" and f"{k.split('.')[0]}.h"
                     not in CASES})


def _release_case(name: str) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """Arguments, expected output and expected last state (or None) of one release case."""
    kwargs = {k.split(".", 1)[1]: v for k, v in CASES.items() if k.startswith(name + ".")}
    out, last = kwargs.pop("out"), kwargs.pop("last_state", None)
    kwargs = {k: v.item() if v.dim() == 0 else v for k, v in kwargs.items()}
    return kwargs, out, last


def _random_case(seed: int, batch: int = 2, channels: int = 4, state: int = 3,
                length: int = 37, bc: str = "grouped", groups: int = 2, with_d: bool = True,
                with_z: bool = True, with_bias: bool = True, softplus: bool = True) -> dict:
    """Keyword arguments of ``selective_scan`` (return_last_state=True). ``bc``: grouped
    (b, g, n, L), shared (b, n, L) or constant (d, n) B and C."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    B, C = {"grouped": lambda: (randn(batch, groups, state, length),
                                randn(batch, groups, state, length)),
            "shared": lambda: (randn(batch, state, length), randn(batch, state, length)),
            "constant": lambda: (randn(channels, state), randn(channels, state))}[bc]()
    delta = randn(batch, channels, length) if softplus else torch.rand(
        batch, channels, length, generator=g)
    return {"u": randn(batch, channels, length), "delta": delta,
            "A": -0.3 - 4 * torch.rand(channels, state, generator=g), "B": B, "C": C,
            "D": randn(channels) if with_d else None,
            "z": randn(batch, channels, length) if with_z else None,
            "delta_bias": 0.5 * randn(channels) if with_bias else None,
            "delta_softplus": softplus, "return_last_state": True}


def _grads(fn, kwargs: dict, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Output, last state and the gradients of a fixed random linear function of both
    with respect to every tensor argument."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in kwargs.items()
              if isinstance(v, torch.Tensor)}
    y, last = fn(**{**kwargs, **leaves})
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g)).sum() + (
        last * torch.randn(last.shape, generator=g)).sum()
    loss.backward()
    return y.detach(), last.detach(), {k: v.grad for k, v in leaves.items()}


def rebuild_release_weights(backbone: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The release model's state_dict entries under ``prefix`` (prefix stripped), rebuilt
    from ``weights_<backbone>.pt`` by the parity README's recipe; every float tensor is
    checked against its stored SHA-256."""
    spec = torch.load(FIXTURES / f"weights_{backbone}.pt", weights_only=True)
    state = {}
    for row in spec["rows"]:
        key, shape = row["key"], tuple(row["shape"])
        if not key.startswith(prefix):
            continue
        if row["kind"] == "recipe":
            k = np.random.RandomState(row["seed"]).randint(-128, 128, size=int(np.prod(shape)))
            value = (row["base"] + k.astype(np.float64) * 2.0 ** (row["exp"] - 7))
            tensor = torch.from_numpy(value.astype(np.float32).reshape(shape))
        elif row["kind"] == "stored":
            tensor = spec["stored"][key]
        else:
            tensor = torch.zeros(shape, dtype=torch.long)
        if tensor.is_floating_point():
            digest = hashlib.sha256(tensor.numpy().astype("<f4").tobytes()).hexdigest()
            assert digest == spec["sha256"][key], f"rebuilt {key} does not match its SHA-256"
        state[key[len(prefix):]] = tensor
    return state


def write_release_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """``state`` saved the way the release's trainer saves: DDP ``module.`` keys beside
    ``epoch``, ``optimizer`` (SGD) and ``optimizer_swin`` (AdamW) states."""
    sgd = {"state": {}, "param_groups": [{"lr": 0.05, "momentum": 0.9, "params": [0, 1]}]}
    adamw = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
             "param_groups": [{"lr": 6e-5, "betas": (0.9, 0.999), "params": [0]}]}
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": sgd, "optimizer_swin": adamw}, path)
    return path


def release_state(backbone: str, shot: int) -> dict[str, torch.Tensor]:
    """The rebuilt weights for a ``shot``-shot model (the 1-shot model has no kshot_rw)."""
    state = rebuild_release_weights(backbone)
    return state if shot > 1 else {k: v for k, v in state.items()
                                   if not k.startswith("kshot_rw.")}


def load_parity(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def parity_batch(episodes: list[int], shot: int) -> dict[str, torch.Tensor]:
    """The model batch of ``inputs.pt``: the stored images are normalised on a 1/32 grid;
    the model takes RGB 0..255, so they are mapped back (in float64)."""
    inputs = load_parity("inputs")

    def rgb(q8: torch.Tensor) -> torch.Tensor:
        return (q8.double() / 32 * PIXEL_STD + PIXEL_MEAN).float()

    supports = inputs["s_x_q8"][episodes, :shot]
    return {"query_img": rgb(inputs["x_q8"][episodes]),
            "support_imgs": rgb(supports.flatten(0, 1)).unflatten(0, supports.shape[:2]),
            "support_masks": inputs["s_y"][episodes, :shot].long()}


def probes(t: torch.Tensor, f: int) -> dict[str, torch.Tensor]:
    """The parity README's probes of a tensor (``cmean``, ``pmean`` pooled by ``f``,
    ``crop``)."""
    t = t.float()
    if t.dim() == 2:
        return {"crop": t[:, :64]}
    p = t.mean(dim=1)
    if f > 1:
        pool = F.avg_pool2d if p.dim() == 3 else F.avg_pool1d
        p = pool(p[:, None], f)[:, 0]
    out = {"cmean": t.mean(dim=tuple(range(2, t.dim()))), "pmean": p}
    if t.dim() == 3:
        out["crop"] = t[:, :8, :64]
    else:
        out["crop"] = t[(slice(None), slice(0, 8)) + tuple(
            slice(max(0, (n - 8) // 2), max(0, (n - 8) // 2) + 8) for n in t.shape[2:])]
    return out


def tolerance(name: str) -> tuple[float, float, float]:
    """(atol, rtol, scale) of a stored tensor: ``|ours - ref| <= atol + scale max|ref| +
    rtol |ref|``. The parity README's suggested tolerances, with atol and rtol doubled for
    everything computed from the ResNet/VGG features except the priors and the Gram values,
    and ``base_out`` (a 1x1 conv of the head features) in the feature group. The README's
    values came from rerunning the release's own code; an independent float32 convolution
    differs more: the fixtures' own rounding (the release in float32 vs our code in float64,
    same weights) reaches s_feat3@crop 8.5e-4, q_feat4@crop 5.8e-4 and base_out@crop 3.5e-4,
    and our float32 run is as close to float64 as the fixtures are. The SS2D internals
    (``blk*``: sums of four scans over up to 8192 tokens, values to ~70) carry these
    upstream differences amplified (3e-3 where the ResNet-50 map reaches 57, 1e-4 of VGG's
    with its quieter features): 1e-4 of the tensor's largest value is added for them.
    """
    if name.startswith(("prior_", "corr_query_mask")):
        return 3e-4, 0.0, 0.0
    if name.startswith(("gram_", "est_val", "kshot_")):
        return 1e-5, 0.0, 0.0
    if name.startswith(("vssm_", "blk", "aspp_out", "res1_out", "res2_out")):
        return 1e-3, 2e-3, 1e-4 if name.startswith("blk") else 0.0
    if name.startswith(("q_feat", "s_feat", "q_mid", "s_mid", "supp_", "q_merged", "s_merged",
                        "base_out")):
        return 1e-3, 2e-4, 0.0
    if name == "s_mask64":
        return 1e-6, 0.0, 0.0
    return 2e-4, 2e-4, 0.0


class ParityCompare:
    """Compares stored keys (``name`` or ``name@probe``) at ``tolerance`` (exact for
    booleans and indices) and records the largest |difference| per case and key."""

    def __init__(self) -> None:
        self.worst: dict[str, dict[str, float]] = {}

    def __call__(self, case: str, name: str, actual: torch.Tensor, expected: torch.Tensor,
                 meta: dict) -> float:
        base, _, probe = name.partition("@")
        if probe:
            actual = probes(actual, meta["pmean_pool"].get(base, 1))[probe]
        actual = actual.detach().reshape(expected.shape)
        if not expected.is_floating_point():
            assert torch.equal(actual.to(expected.dtype), expected), f"{case} {name}: differs"
            diff = 0.0
        else:
            atol, rtol, scale = tolerance(base)
            atol += scale * expected.abs().max().item()
            err = (actual.float() - expected).abs()
            excess = (err - (atol + rtol * expected.abs())).max().item()
            assert excess <= 0, (f"{case} {name}: max |diff| {err.max():.3g} exceeds atol "
                                 f"{atol:g} + rtol {rtol:g} |ref| by {excess:.3g}")
            diff = err.max().item()
        self.worst.setdefault(case, {})[name] = diff
        return diff


_PARITY_COMPARE = ParityCompare()


@pytest.fixture(scope="session")
def parity_compare() -> ParityCompare:
    return _PARITY_COMPARE


SUMMARY_KEYS = ("logits", "final_out", "meta_out", "base_map", "est_val", "vssm_out@crop",
                "corr_query_mask", "q_feat4@crop")


def pytest_terminal_summary(terminalreporter):
    for case, diffs in sorted(_PARITY_COMPARE.worst.items()):
        terminalreporter.section(f"HMNet parity {case}: max |diff| (key tensors, then largest)")
        keys = [k for k in SUMMARY_KEYS if k in diffs]
        keys += [k for k in sorted(diffs, key=lambda name: -diffs[name]) if k not in keys][:6]
        for name in keys:
            atol, rtol, scale = tolerance(name.split("@")[0])
            extra = f" + {scale:g} max|ref|" if scale else ""
            terminalreporter.write_line(f"{name:28s} {diffs[name]:.3g}  (atol {atol:g}{extra}, "
                                        f"rtol {rtol:g})")


@pytest.fixture(scope="session")
def hmnet_batch():
    """``hmnet_batch(episodes, shot)``: the model batch of the parity inputs."""
    return parity_batch


@pytest.fixture(scope="session")
def release_checkpoint(tmp_path_factory):
    """``release_checkpoint(backbone, shot)``: path of the rebuilt release weights written as
    a release checkpoint (cached per session)."""
    cache: dict[tuple[str, int], Path] = {}

    def get(backbone: str, shot: int) -> Path:
        if (backbone, shot) not in cache:
            path = tmp_path_factory.mktemp("release") / f"{backbone}_{shot}shot.pth"
            cache[backbone, shot] = write_release_checkpoint(path, release_state(backbone, shot))
        return cache[backbone, shot]
    return get


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "release_name" in metafunc.fixturenames:
        metafunc.parametrize("release_name", SCAN_NAMES)


@pytest.fixture
def release_case():
    return _release_case


@pytest.fixture
def random_case():
    return _random_case


@pytest.fixture
def scan_grads():
    return _grads


@pytest.fixture(scope="session")
def hmnet_parity():
    """Loader of ``tests/fixtures/parity_hmnet/<name>.pt`` by name, cached."""
    return functools.cache(load_parity)


@pytest.fixture(scope="session")
def release_weights():
    """``release_weights(backbone, prefix)``: the release's rebuilt state_dict entries."""
    return rebuild_release_weights


@pytest.fixture
def recorded(monkeypatch):
    """Every ``selective_scan`` and ``query_intercepted_step`` call SS2D makes while the test
    runs: ``{"scan": [...], "qim": [...]}`` of (named arguments, result). Per forward of the
    stack: a self block makes one scan call (query and support stacked on the batch, query
    first); a hybrid block the recapped scan, then the support-state scan, then one QIM."""
    calls: dict[str, list] = {"scan": [], "qim": []}

    def recorder(name, fn):
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            calls[name].append((inspect.signature(fn).bind(*args, **kwargs).arguments, result))
            return result
        return call
    monkeypatch.setattr(ss2d, "selective_scan", recorder("scan", ss2d.selective_scan))
    monkeypatch.setattr(ss2d, "query_intercepted_step",
                        recorder("qim", ss2d.query_intercepted_step))
    return calls
