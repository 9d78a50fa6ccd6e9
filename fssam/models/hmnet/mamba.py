"""HMNet's Mamba stack (README: HMNet): blocks alternating self (even) and hybrid (odd) SS2D.

``VSSM`` takes the merged query and support maps channels-first (b, dim, S, S) and returns
the query after the final LayerNorm (the caller applies the ReLU). Its state-dict keys are
the release's under ``mamba.``: ``layers.0.blocks.{i}.{ln_1, self_attention, ln_2, mlp_q,
mlp_s}.*`` and ``norm.*``.

The support output of the last block is never used (as the release), so the last block skips the
work that only serves it (its support gate, ``out_proj_s``, ``mlp_s``; a hybrid last block
still computes the support's input, which its query scan reads). Those weights exist, load
and get no gradient, as in the release.
"""

from __future__ import annotations

from torch import Tensor, nn

from fssam.models.hmnet.ss2d import SS2D


class Mlp(nn.Module):
    """Linear -> GELU (exact erf) -> Linear, same width."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)
        for linear in (self.fc1, self.fc2):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    """Pre-norm residual block on a query and a support map (b, S, S, dim); ``ln_1``,
    ``ln_2`` and the SS2D scan parameters are shared by the two branches."""

    def __init__(self, *, dim: int, d_inner: int, d_state: int, dt_rank: int, grid_size: int,
                 ratio: int, hybrid: bool, qim_per_channel_d: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SS2D(dim=dim, d_inner=d_inner, d_state=d_state, dt_rank=dt_rank,
                                   grid_size=grid_size, ratio=ratio, hybrid=hybrid,
                                   qim_per_channel_d=qim_per_channel_d)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp_q = Mlp(dim=dim)
        self.mlp_s = Mlp(dim=dim)

    def forward(self, query: Tensor, support: Tensor, *, need_support: bool = True
                ) -> tuple[Tensor, Tensor | None]:
        dq, ds = self.self_attention(self.ln_1(query), self.ln_1(support),
                                     need_support=need_support)
        query = query + dq
        query = query + self.mlp_q(self.ln_2(query))
        if not need_support:
            return query, None
        support = support + ds
        return query, support + self.mlp_s(self.ln_2(support))


class VSSM(nn.Module):
    """``depth`` blocks (even index self, odd hybrid) and a final LayerNorm on the query.

    ``grid_size`` is the side S of the square maps it takes (64 PASCAL, 80 COCO); it must be
    divisible by ``ratio`` (the hybrid blocks cut S×S into ratio² windows of (S/ratio)²
    pixels and downsample the support to S/ratio).
    """

    def __init__(self, *, grid_size: int, dim: int = 256, depth: int = 8, d_state: int = 16,
                 d_inner: int = 512, dt_rank: int = 16, ratio: int = 4,
                 qim_per_channel_d: bool = False) -> None:
        super().__init__()
        if grid_size <= 0 or ratio <= 0 or grid_size % ratio:
            raise ValueError(f"VSSM: grid_size {grid_size} must be a positive multiple of the "
                             f"window ratio {ratio}")
        self.grid_size, self.dim = grid_size, dim
        blocks = nn.ModuleList(
            VSSBlock(dim=dim, d_inner=d_inner, d_state=d_state, dt_rank=dt_rank,
                     grid_size=grid_size, ratio=ratio, hybrid=i % 2 == 1,
                     qim_per_channel_d=qim_per_channel_d)
            for i in range(depth))
        self.layers = nn.ModuleList([nn.ModuleDict({"blocks": blocks})])
        self.norm = nn.LayerNorm(dim)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.layers[0]["blocks"]

    def _check(self, name: str, x: Tensor) -> None:
        expected = (self.dim, self.grid_size, self.grid_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"VSSM: {name} must be (batch, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}) (grid_size {self.grid_size}), got "
                             f"{tuple(x.shape)}")

    def forward(self, query: Tensor, support: Tensor) -> Tensor:
        """(b, dim, S, S) query and support -> (b, dim, S, S) query after the final norm."""
        self._check("query", query)
        self._check("support", support)
        if support.shape[0] != query.shape[0]:
            raise ValueError(f"VSSM: batch of support {support.shape[0]} != query "
                             f"{query.shape[0]}")
        q, s = query.permute(0, 2, 3, 1), support.permute(0, 2, 3, 1)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            q, s = block(q, s, need_support=i < last)
        return self.norm(q).permute(0, 3, 1, 2)
