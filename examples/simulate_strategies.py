"""Which selection strategy pays off on this data? Replay labelling rounds on arrays:
each strategy picks from a pool whose labels an oracle reveals only for the picks, a
logistic probe is trained on them and scored on a held-out test part.

Pure compute, no workspace: sklearn's digits as 64-d pixel vectors, 1,200 pool rows and
597 test rows; 4 strategies x budgets 10-100 x 3 seeds. Run:
python examples/simulate_strategies.py   (about 20 s on a laptop CPU)
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from curate.select.simulation import paired_differences, simulate_curves

X, y = load_digits(return_X_y=True)  # float (1797, 64), int (1797,)
X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=597, stratify=y, random_state=0)

runs = simulate_curves(X_pool, y_pool, X_test, y_test, ["random", "kcenter", "typiclust", "badge"],
                       budgets=[10, 20, 50, 100], seeds=3, probe="logistic", device="cpu")
summary = paired_differences(runs, baseline="random")  # mean accuracy, paired diff to random

table = summary.pivot(index="strategy", columns="budget", values="accuracy")
print("test accuracy by labelling budget (mean of 3 seeds):")
print(table.round(3).to_string())
gain = summary[summary.strategy != "random"].pivot(index="strategy", columns="budget", values="diff")
print("points over random (paired by seed):")
print((100 * gain).round(1).to_string())
best = table[20].idxmax()
print(f"best at 20 labels: {best} ({table.loc[best, 20]:.3f} vs random {table.loc['random', 20]:.3f})")
