"""Pretrained backbones by torchvision weight name (`--weights DEFAULT`, `IMAGENET1K_V1`):
resolved through torchvision's weights API to torch's hub cache (curate.encoders.weights).

No test downloads: TORCH_HOME is a tmp folder, and the download path is exercised
either with CURATE_OFFLINE=1 (no network call at all) or through a proxy address where
nothing listens (the connection is refused at once, whatever the machine's network).
"""

import socket

import pytest
import torch
import torchvision
from click.testing import CliRunner
from sqlalchemy import select

from curate.db.models import Model
from curate.encoders import ENCODERS
from curate.encoders.weights import cache_path, resolve_weights, torchvision_weights
from curate.errors import CurateError, ServiceError

R18_FILE = "resnet18-f37072fd.pth"  # basename of ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under tmp; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("CURATE_OFFLINE", raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def _dead_proxy() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def _random_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return getattr(torchvision.models, arch)(weights=None).state_dict()


def _assert_same(net: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    got = net.state_dict()
    body = [k for k in saved if not k.startswith(("fc.", "classifier."))]
    assert body and all(k in got for k in body)
    for k in body:
        assert torch.equal(got[k], saved[k]), k


def test_names_resolve_to_torchvisions_cache_file(hub):
    w = torchvision_weights("resnet18", "DEFAULT")
    assert w is torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert torchvision_weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1") is w
    assert cache_path(w) == hub / R18_FILE  # torch.hub.get_dir()/checkpoints, under TORCH_HOME
    with pytest.raises(CurateError, match="no torchvision weights named 'IMAGENET9K'.*IMAGENET1K_V1, DEFAULT"):
        resolve_weights("resnet18", "IMAGENET9K")
    with pytest.raises(CurateError, match="vit-s has no torchvision weights"):
        resolve_weights("vit-s", "DEFAULT")
    with pytest.raises(CurateError, match="weights file not found: /no/such.pth"):
        resolve_weights("resnet18", "/no/such.pth")


def test_offline_error_names_the_file_and_the_folder(hub, monkeypatch, sqlite_ws, image_folder):
    from curate.cli import main

    monkeypatch.setenv("CURATE_OFFLINE", "1")
    with pytest.raises(CurateError) as e:
        resolve_weights("resnet18", "DEFAULT")
    msg = str(e.value)
    assert "\n" not in msg and R18_FILE in msg and f"{hub}/" in msg
    assert "https://download.pytorch.org/models/" + R18_FILE in msg
    # the same through the CLI: one line, exit 2, nothing embedded, nothing written to the cache
    runner = CliRunner()
    assert runner.invoke(main, ["-w", str(sqlite_ws.root), "ingest", str(image_folder)]).exit_code == 0
    r = runner.invoke(main, ["-w", str(sqlite_ws.root), "embed", "--encoder", "resnet18",
                             "--weights", "IMAGENET1K_V1", "--image-size", "32"])
    err = r.stderr.strip()  # (the transient progress bar may leave an empty line)
    assert r.exit_code == 2 and "\n" not in err
    assert err.startswith("error: resnet18 weights IMAGENET1K_V1 (resnet18-f37072fd.pth) are not in ")
    assert str(hub) in err and not hub.exists()


def test_failed_download_is_one_line_naming_file_and_folder(hub, monkeypatch):
    proxy = _dead_proxy()  # urllib sends the request there: refused at once, never downloads
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, proxy)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ServiceError) as e:
        resolve_weights("resnet50", "IMAGENET1K_V2")
    msg = str(e.value)
    assert msg.startswith("cannot download resnet50 weights IMAGENET1K_V2 (")
    assert "\n" not in msg and "resnet50-11ad3fa6.pth" in msg and f"{hub}/" in msg
    assert e.value.exit_code == 4
    assert not any(hub.iterdir()) if hub.exists() else True  # no partial file left


def test_a_file_in_the_cache_is_loaded_by_name(hub, sqlite_ws, image_folder):
    from curate.cli import main

    hub.mkdir(parents=True)
    saved = _random_state("resnet18", seed=3)
    torch.save(saved, hub / R18_FILE)
    enc = ENCODERS.get("resnet18")(weights="DEFAULT", image_size=32)
    _assert_same(enc.net, saved)
    assert isinstance(enc.net.fc, torch.nn.Identity)
    # the CLI: `curate embed --weights IMAGENET1K_V1` records the cached file and the name
    runner = CliRunner()
    assert runner.invoke(main, ["-w", str(sqlite_ws.root), "ingest", str(image_folder)]).exit_code == 0
    r = runner.invoke(main, ["-w", str(sqlite_ws.root), "embed", "--encoder", "resnet18",
                             "--weights", "IMAGENET1K_V1", "--image-size", "32", "--json"])
    assert r.exit_code == 0, r.output
    index = sqlite_ws.open_index()
    with index.session() as s:
        row = s.scalar(select(Model).where(Model.encoder == "resnet18"))
        assert row.weights_path == str((hub / R18_FILE).resolve())
        assert row.params == {"weights_name": "IMAGENET1K_V1"} and len(row.weights_sha256) == 64
    index.close()
    # the trainers' backbone takes the same names (standard stem above 64 px)
    from curate.trainers.backbones import build_backbone

    net, dim = build_backbone("resnet18", 3, 96, weights="DEFAULT")
    assert dim == 512
    _assert_same(net, saved)


def test_densenet_files_with_torchvisions_old_key_names_load(hub):
    hub.mkdir(parents=True)
    saved = _random_state("densenet121", seed=1)
    import re

    old = re.compile(r"(denselayer\d+\.)(norm|relu|conv)([12])\.")
    legacy = {old.sub(r"\1\2.\3.", k): v for k, v in saved.items()}  # as the published file
    assert legacy.keys() != saved.keys()
    name = cache_path(torchvision_weights("densenet121", "DEFAULT")).name
    torch.save(legacy, hub / name)
    enc = ENCODERS.get("densenet121")(weights="IMAGENET1K_V1", image_size=32)
    _assert_same(enc.net, saved)


def test_train_refuses_an_unknown_name_before_any_work(sqlite_ws, image_folder, hub):
    from curate.ingest import ingest
    from curate.trainers.run import train

    index = sqlite_ws.open_index()
    ingest(index, [image_folder])
    with pytest.raises(CurateError, match="resnet18 has no torchvision weights named 'V9'"):
        train(index, sqlite_ws, "simclr", backbone="resnet18", weights="V9", epochs=1)
    with pytest.raises(CurateError, match="small-cnn has no torchvision weights"):
        train(index, sqlite_ws, "simclr", weights="DEFAULT", epochs=1)  # 16 px: small-cnn
    index.close()
