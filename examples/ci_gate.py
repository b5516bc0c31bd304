"""A CI gate on incoming batches: fit a novelty scorer on reference images once, then
check each new batch for shift (flag rate + MMD test, Benjamini-Hochberg across batches)
and fail the job (exit 3, as `curate check-batch --fail-on-shift`) when one is shifted.

Reference: 900 of sklearn's digits, drawn at random. Incoming: 300 other random digits
(same source) and 300 digits as negatives (a scanner that inverts polarity). Run:
python examples/ci_gate.py [WORKDIR]   (about 15 s on a laptop CPU; exits 3)
"""

import sys
from pathlib import Path

from _digits import ORDER, write_digits
from curate.novelty.batch_check import check_batch
from curate.embed import embed
from curate.ingest import ingest
from curate.novelty.stored import fit_scorer
from curate.novelty.scoring import score_images
from curate.workspace import init_workspace

root = Path(sys.argv[1] if len(sys.argv) > 1 else "ci-gate")
ws = init_workspace(root)
index = ws.open_index()

# once: the reference, its embedding and a calibrated scorer (flags 5% of reference images)
write_digits(root / "reference", ORDER[:900])
ingest(index, [root / "reference"], batch="reference")
emb = embed(index, ws, encoder="pixels-pca", device="cpu")
scorer = fit_scorer(index, ws, "knn", k=10, reference_batches=["reference"], alpha=0.05)
print(f"scorer {scorer.name}: threshold {scorer.threshold:.4g}")

# per incoming batch: ingest, embed what is new (same PCA), check
write_digits(root / "incoming-same", ORDER[900:1200])
write_digits(root / "incoming-inverted", ORDER[1200:1500], invert=True)
shifted = []
for batch in ("incoming-same", "incoming-inverted"):
    ingest(index, [root / batch], batch=batch)
    embed(index, ws, encoder="pixels-pca", device="cpu")  # resumable: only the new images
    check = check_batch(index, batch, scorer.name, permutations=200)
    r = check.result
    print(f"{batch}: {check.verdict} ({r['n_flagged']}/{r['n_batch']} flagged, "
          f"MMD p = {r['mmd']['p_value']:.3g}, BH-adjusted p = {r['bh']['adjusted_p']:.3g})")
    if check.shifted:
        shifted.append(batch)
        top = score_images(index, scorer.name, batch=batch).scores.head(3)
        print("  most novel:", ", ".join(Path(p).name for p in top["path"]))
index.close()
if shifted:
    print("gate: FAIL, shifted:", ", ".join(shifted))
    sys.exit(3)
print("gate: pass")
