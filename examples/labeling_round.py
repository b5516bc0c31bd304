"""Two labelling rounds end to end with the Python API: ingest -> embed -> select ->
"annotate" -> select again, on 600 random ones of sklearn's digits (no labels at the start).

The annotator is simulated by the folder name each image was written to; in real use
the labels come back from Label Studio (`curate push/pull label-studio`) or a CSV.
Run: python examples/labeling_round.py [WORKDIR]   (about 10 s on a laptop CPU)
"""

import sys
from pathlib import Path

import pandas as pd

from _digits import ORDER, digit_of, write_digits
from curate.embed import embed
from curate.export import write_selection
from curate.ingest import ingest
from curate.select.selection import select_images
from curate.workspace import init_workspace

BUDGET = 30

root = Path(sys.argv[1] if len(sys.argv) > 1 else "labeling-round")
ws = init_workspace(root)
index = ws.open_index()
write_digits(root / "pool", ORDER[:600])
print(ingest(index, [root / "pool"], batch="pool").added, "images ingested")  # no labels
emb = embed(index, ws, encoder="pixels-pca", device="cpu")  # resized pixels -> PCA(64)

seen: set[str] = set()
for rnd in (1, 2):
    res = select_images(index, BUDGET, embeddings=emb.embedding_set)  # default strategy: auto
    write_selection(res.picks, root / f"round{rnd}.csv")  # what goes to the annotators
    digits = res.picks["path"].map(digit_of)
    again = len(seen & set(res.picks["path"]))
    seen |= set(res.picks["path"])
    chose = res.params.get("info", {}).get("chose", res.strategy)
    print(f"round {rnd}: {len(res.picks)} picks by {res.strategy} ({chose}), digits covered "
          f"{digits.nunique()}/10, picked again {again}")
    # the annotators' answers: a manifest path,label; ingesting it stores the labels
    answers = root / f"labels{rnd}.csv"
    pd.DataFrame({"path": res.picks["path"], "label": digits}).to_csv(answers, index=False)
    print(f"round {rnd}: {ingest(index, [answers], batch='pool').labels} labels stored")
index.close()
