from sqlalchemy import func, select

from curate.db.models import Image, SelectionItem
from curate.demo import fresh_dir, run_demo
from curate.workspace import find_workspace


def test_demo_runs_end_to_end_without_training(tmp_path):
    rep = run_demo(tmp_path / "demo", budget=50, train=False)
    assert len(rep.picks) == 50 and rep.picks["image_id"].is_unique
    assert rep.classes_covered >= 9  # k-center covers (nearly) every digit
    idx = find_workspace(rep.workspace).open_index()
    with idx.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1797
        assert s.scalar(select(func.count()).select_from(SelectionItem)) == 50
    idx.close()
    assert fresh_dir(tmp_path / "demo") == tmp_path / "demo-2"


def test_demo_trains_a_quick_ssl_encoder(tmp_path):
    rep = run_demo(tmp_path / "demo", budget=20, train=True, train_seconds=3)
    assert rep.encoder.startswith("demo-simclr") and rep.embedding_set.startswith(rep.encoder)
    assert len(rep.picks) == 20 and rep.picks["score"].iloc[1:].notna().all()
    assert rep.seconds["train"] > 0
