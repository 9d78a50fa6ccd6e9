"""The PSPNet base learner (BAM stage 1, README: HMNet) and the features HMNet takes from it
(2.3).

``PSPNet`` is a plain semantic segmenter over the background and the base classes:
backbone ``layer0..4`` -> ``ppm`` (bins 1, 2, 3, 6) -> ``cls`` (3x3 conv, BN, ReLU,
Dropout2d, 1x1 conv). HMNet holds the same ``layer0..4``/``ppm`` modules and ``cls.0``/``cls.1``
under the same names, so ``extract_feats`` serves both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fssam.models.hmnet.backbones import backbone_stages, feature_channels
from fssam.contract import IGNORE_LABEL

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
PPM_BINS = (1, 2, 3, 6)
FEATURE_KEYS = ("f1", "f2", "f3", "f4")
BACKBONE_MODULES = ("layer0", "layer1", "layer2", "layer3", "layer4")
HEAD_MODULES = ("ppm", "cls")


def up(x: Tensor, size: int | Sequence[int]) -> Tensor:
    """Bilinear resize with ``align_corners=True``: the only interpolation HMNet uses."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def normalise_images(images: Tensor) -> Tensor:
    """RGB 0..255 -> ``(x - 255 mean) / (255 std)`` with the ImageNet mean and std."""
    mean = images.new_tensor(PIXEL_MEAN).view(1, 3, 1, 1) * 255
    std = images.new_tensor(PIXEL_STD).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


class PPM(nn.Module):
    """Pyramid pooling: per bin AdaptiveAvgPool -> conv1x1 (no bias) -> BN -> ReLU -> ``up``
    to the input size; output ``cat([x, b1, b2, b3, b6])``."""

    def __init__(self, *, in_dim: int, reduction_dim: int, bins: Sequence[int] = PPM_BINS
                 ) -> None:
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_dim, reduction_dim, 1, bias=False),
                          nn.BatchNorm2d(reduction_dim), nn.ReLU(inplace=True))
            for b in bins)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x] + [up(f(x), x.shape[-2:]) for f in self.features], dim=1)


def psp_head(*, in_dim: int, head_dim: int, num_classes: int) -> nn.Sequential:
    """``cls``: [0] conv3x3 (2F -> head_dim, no bias), [1] BN, [2] ReLU, [3] Dropout2d(0.1),
    [4] conv1x1 (head_dim -> classes, bias)."""
    return nn.Sequential(nn.Conv2d(in_dim, head_dim, 3, padding=1, bias=False),
                         nn.BatchNorm2d(head_dim), nn.ReLU(inplace=True), nn.Dropout2d(0.1),
                         nn.Conv2d(head_dim, num_classes, 1))


def extract_feats(net: nn.Module, images: Tensor, *, vgg: bool) -> dict[str, Tensor]:
    """Frozen features of normalised ``images`` (n,3,H,W) through ``net.layer0..4``,
    ``net.ppm`` and ``net.cls[0:2]``: f1 = layer2 (VGG: resized to layer3's size),
    f2 = layer3, f3 = layer4, f4 = conv3x3 + BN of the PSPNet head (no ReLU)."""
    x = net.layer1(net.layer0(images))
    f1 = net.layer2(x)
    f2 = net.layer3(f1)
    f3 = net.layer4(f2)
    f4 = net.cls[1](net.cls[0](net.ppm(f3)))
    if vgg:
        f1 = up(f1, f2.shape[-2:])
    return {"f1": f1, "f2": f2, "f3": f3, "f4": f4}


class PSPNet(nn.Module):
    """PSPNet over ``1 + num_base_classes`` classes (class j >= 1 = j-th base class in
    ascending id order), trained as a plain semantic segmenter (BAM stage 1): every module
    trainable, BatchNorm and dropout follow ``train()``."""

    def __init__(self, *, backbone: str = "resnet50", num_base_classes: int = 15,
                 backbone_width: int = 64, head_dim: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        stages = backbone_stages(backbone, backbone_width)
        for i, stage in enumerate(stages):
            setattr(self, f"layer{i}", stage)
        fea_dim = feature_channels(backbone, backbone_width)["f3"]
        self.ppm = PPM(in_dim=fea_dim, reduction_dim=fea_dim // len(PPM_BINS))
        self.cls = psp_head(in_dim=2 * fea_dim, head_dim=head_dim,
                            num_classes=1 + num_base_classes)

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``batch["image"]`` (b,3,H,W) RGB 0..255 -> ``logits`` (b, 1+B, H, W)."""
        images = batch["image"]
        x = normalise_images(images)
        for i in range(5):
            x = getattr(self, f"layer{i}")(x)
        return {"logits": up(self.cls(self.ppm(x)), images.shape[-2:])}

    def loss(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Cross entropy of ``logits`` against ``batch["label"]`` (b,H,W), ignoring 255."""
        loss = F.cross_entropy(out["logits"].float(), batch["label"].long(),
                               ignore_index=IGNORE_LABEL)
        return {"loss": loss}

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The whole state (every module is trained)."""
        return self.state_dict()

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Strict ``load_state_dict`` (names every missing/unexpected key)."""
        self.load_state_dict(dict(state))
