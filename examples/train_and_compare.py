"""Train a small self-supervised encoder and compare it with the pixels-pca baseline on
the same images: 10-NN and linear-probe accuracy, and how well two novelty scorers (knn,
mahalanobis) tell an out-of-distribution batch apart (AUROC), with 95% intervals; then
pick the knn scorer's k from in-distribution data only (sensitivity, thesis 003).

Data: 1,000 of sklearn's digits with folder labels; OOD: 300 others as negatives.
Training: SimCLR, small CNN, 16 px, 20 s on the CPU. Run:
python examples/train_and_compare.py [WORKDIR]   (about 1 minute on a laptop CPU)
"""

import sys
from pathlib import Path

from _digits import ORDER, write_digits
from curate.compare import compare
from curate.embed import embed
from curate.ingest import ingest
from curate.novelty.tuning import tune_scorer
from curate.trainers.run import train
from curate.workspace import init_workspace

root = Path(sys.argv[1] if len(sys.argv) > 1 else "train-and-compare")
ws = init_workspace(root)
index = ws.open_index()
write_digits(root / "digits", ORDER[:1000])
write_digits(root / "inverted", ORDER[1000:1300], invert=True)
ingest(index, [root / "digits"], batch="digits", labels="folders")
ingest(index, [root / "inverted"], batch="inverted")

base = embed(index, ws, encoder="pixels-pca", device="cpu").embedding_set
# 10% of the images are held out of training (stored with the run; tune_scorer uses them)
run = train(index, ws, "simclr", batch="digits", name="simclr-digits", backbone="small-cnn",
            image_size=16, batch_size=128, max_minutes=20 / 60, num_workers=0,
            accelerator="cpu", devices=1, checkpoint_every=0, progress=False, compare=False)
print(f"trained {run.name}: {run.data['steps']} steps, loss {run.metrics[-1]['loss']:.3f}")
mine = embed(index, ws, model=run.name, device="cpu").embedding_set

res = compare(index, ws, [base, mine], ood_batches=["inverted"], al=False, n_boot=200)
cols = ["metric", "set", "value", "low", "high", "diff", "verdict"]
print(res.table[cols].round(3).to_string(index=False))
for line in res.lines:
    print(line)

tuned = tune_scorer(index, mine, ["knn"])  # sens: trained images vs the run's held-out ones
print(f"knn k by sensitivity: {tuned.chosen}")
index.close()
