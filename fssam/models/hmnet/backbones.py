"""HMNet's backbones as ``layer0..layer4`` stages (README: HMNet).

- ResNet-50 "v2" (PSPNet style): a deep stem of three 3x3 convolutions, torchvision
  Bottleneck stages, output stride 8 (every block of layer3 dilated 2, of layer4 dilated 4).
- VGG-16-BN: torchvision's ``features`` cut into five slices, max-pools with
  ``ceil_mode=True`` and without the last pool.

The module names give the release's state-dict keys (``layer0.{0,1,3,4,6,7}`` for the
ResNet stem, torchvision Bottleneck names in ``layer1..4``, ``layerN.i`` inside each VGG
slice). ``width`` scales every channel count (64 = the release) for tiny test models.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.models.vgg import make_layers

BACKBONES = ("resnet50", "vgg")
RESNET50_BLOCKS = (3, 4, 6, 3)
# conv widths of VGG-16 in multiples of ``width`` ('M' = max-pool), torchvision's cfg 'D'
_VGG16_CFG = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")
# features[start:stop] of each stage; the last pool (index 43) is left out
VGG16_SLICES = ((0, 7), (7, 14), (14, 24), (24, 34), (34, 43))


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def resnet_stem(width: int = 64) -> nn.Sequential:
    """conv3x3/2-BN-ReLU, conv3x3-BN-ReLU, conv3x3 (-> 2*width)-BN-ReLU, maxpool 3x3/2."""
    return nn.Sequential(
        _conv3x3(3, width, stride=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        _conv3x3(width, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        _conv3x3(width, 2 * width), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1))


def resnet_stage(inplanes: int, planes: int, blocks: int, *, stride: int = 1,
                 dilation: int = 1) -> nn.Sequential:
    """``blocks`` torchvision Bottlenecks; the first projects (conv1x1 with ``stride`` + BN),
    every block's 3x3 conv has ``dilation`` (PSPNet dilates all blocks, torchvision's
    ``replace_stride_with_dilation`` not the first)."""
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(out))
    layers = [Bottleneck(inplanes, planes, stride, downsample, dilation=dilation)]
    layers += [Bottleneck(out, planes, dilation=dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def resnet50_stages(width: int = 64, blocks: Sequence[int] = RESNET50_BLOCKS
                    ) -> list[nn.Sequential]:
    """``[layer0, layer1, layer2, layer3, layer4]`` of the dilated deep-stem ResNet-50."""
    planes = [width, 2 * width, 4 * width, 8 * width]
    stages = [resnet_stem(width)]
    inplanes = 2 * width
    for i, (p, n) in enumerate(zip(planes, blocks)):
        stride, dilation = ((1, 1), (2, 1), (1, 2), (1, 4))[i]
        stages.append(resnet_stage(inplanes, p, n, stride=stride, dilation=dilation))
        inplanes = p * Bottleneck.expansion
    return stages


def vgg16_bn_stages(width: int = 64) -> list[nn.Sequential]:
    """``[layer0, ..., layer4]``: torchvision's vgg16_bn ``features`` sliced, pools with
    ``ceil_mode=True``, pool5 dropped."""
    cfg = [c if c == "M" else c * width for c in _VGG16_CFG]
    features = make_layers(cfg, batch_norm=True)
    for i, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            features[i] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
    return [nn.Sequential(*features[a:b]) for a, b in VGG16_SLICES]


def backbone_stages(backbone: str, width: int = 64) -> list[nn.Sequential]:
    """The five stages of ``backbone`` ("resnet50" | "vgg")."""
    if backbone == "resnet50":
        return resnet50_stages(width)
    if backbone == "vgg":
        return vgg16_bn_stages(width)
    raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")


def feature_channels(backbone: str, width: int = 64) -> dict[str, int]:
    """Channels of layer2 (f1), layer3 (f2) and layer4 (f3) outputs."""
    if backbone == "resnet50":
        return {"f1": 8 * width, "f2": 16 * width, "f3": 32 * width}
    if backbone == "vgg":
        return {"f1": 4 * width, "f2": 8 * width, "f3": 8 * width}
    raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
