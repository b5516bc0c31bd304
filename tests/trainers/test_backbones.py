"""Backbones: shapes per name/channels/size, minimum sizes, local weights loading."""

import pytest
import torch
import torchvision

from curate.errors import CurateError
from curate.trainers.backbones import backbone_names, build_backbone, default_backbone


@pytest.mark.parametrize("name", ["small-cnn", "resnet18"])
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_shapes(name, channels, size):
    net, dim = build_backbone(name, channels, size)
    net.eval()
    assert net(torch.randn(2, channels, size, size)).shape == (2, dim)


def test_small_stem_only_for_small_images():
    small, _ = build_backbone("resnet18", 3, 32)
    big, _ = build_backbone("resnet18", 3, 96)
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, torch.nn.Identity)
    assert big.conv1.kernel_size == (7, 7) and not isinstance(big.maxpool, torch.nn.Identity)


def test_defaults_and_names():
    assert default_backbone(28) == "small-cnn" and default_backbone(224) == "resnet18"
    assert {"small-cnn", "resnet18", "resnet50", "vit-s"} <= set(backbone_names())


@pytest.mark.parametrize("name,size", [("small-cnn", 4), ("resnet18", 8), ("resnet50", 12), ("vit-s", 8)])
def test_too_small_images_are_refused(name, size):
    with pytest.raises(CurateError, match="too small"):
        build_backbone(name, 3, size)


def test_unknown_backbone_and_channels():
    with pytest.raises(CurateError, match="unknown backbone"):
        build_backbone("nope", 3, 32)
    with pytest.raises(CurateError, match="channels"):
        build_backbone("small-cnn", 2, 32)


def test_weights_from_torchvision_file_rgb_to_gray(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net, _ = build_backbone("resnet18", 1, 96, weights=tmp_path / "r18.pth")
    assert torch.allclose(net.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)


def test_bad_weights_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CurateError, match="cannot read"):
        build_backbone("small-cnn", 3, 32, weights=tmp_path / "junk.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CurateError, match="does not fit"):
        build_backbone("small-cnn", 3, 32, weights=tmp_path / "r18.pth")
    with pytest.raises(CurateError, match="not found"):
        build_backbone("small-cnn", 3, 32, weights=tmp_path / "missing.pth")
