#!/usr/bin/env bash
# GPU paths in one short run (under 5 minutes on one H100/H200), printing one JSON.
#
#   bash benchmarks/gpu_check.sh            # from the repository root or anywhere
#   PYTHON=/opt/venv/bin/python CURATE_WHEELS=/path/to/wheels bash benchmarks/gpu_check.sh
#
# Stages (each time-boxed; a failing stage is recorded and the next one still runs):
#   1. install   pip install -e ".[gpu,test]" (faiss-gpu); offline machines: CURATE_WHEELS=DIR
#                of wheels (pip download -d DIR ".[gpu,test]" on a machine with the same Python).
#                Without it, the k-center and encoder stages still run from the checkout.
#   2. tests     the tests that take a CUDA path when torch sees a GPU: tests/select/test_kcenter.py
#                (torch/cuda backend, fp16 on cuda), tests/test_embed.py (embed --device auto = cuda,
#                AMP), tests/novelty (faiss flat index on the GPU when faiss-gpu sees one).
#   3. kcenter   curate.select.kcenter at N=10M, d=256, k=1000, fp16 on cuda: the greedy loop's
#                time (run with k=1000 minus the run with k=1: transfer and norms cancel) against
#                the HBM bound k*N*d*2 bytes / read bandwidth (best torch sum over the fp16 matrix);
#                also fp32 for comparison and the end-to-end call.
#   4. faiss     faiss-gpu flat kNN (1M x 128 reference, 100k queries, k=50) vs faiss-cpu: time
#                and agreement of the neighbour sets (only with faiss-gpu installed).
#   5. embed     encoder throughput, resnet50 at 224 px, batch 256: fp32 vs AMP fp16 autocast
#                (what curate embed does on CUDA); with curate installed also `curate embed
#                --device cuda` end to end on 20k synthetic 64x64 PNGs (decode included).
# Writes benchmarks/results/gpu_check.json (and $OUT/gpu_check.json when OUT is set).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
export CURATE_GPU_WORK="$WORK" PYTHONUNBUFFERED=1
START=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - START )) s)" >&2; }

# 1. install -------------------------------------------------------------------------------
stage install
pipargs=(--retries 0 --timeout 10)
if [ -n "${CURATE_WHEELS:-}" ]; then pipargs+=(--no-index --find-links "$CURATE_WHEELS"); fi
if timeout 150 "$PY" -m pip install -q "${pipargs[@]}" -e ".[gpu,test]" >"$WORK/install.log" 2>&1; then
  echo '{"install": "ok"}' >"$WORK/install.json"
  INSTALLED=1
else
  "$PY" - <<'EOF' >"$WORK/install.json"
import json, os
log = open(os.path.join(os.environ["CURATE_GPU_WORK"], "install.log")).read().strip().splitlines()
errs = [l for l in log if l.lstrip().lower().startswith("error")] or log or ["timed out"]
print(json.dumps({"install": "failed", "install_error": errs[0].strip()[:300]}))
EOF
  INSTALLED=0
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, installed or not

# 2. CUDA tests ------------------------------------------------------------------------------
stage tests
if [ "$INSTALLED" = 1 ]; then
  tests=(tests/select/test_kcenter.py tests/test_embed.py tests/novelty)
  extra=()
else
  tests=(tests/select/test_kcenter.py)   # needs only numpy, torch, hypothesis
  extra=(--noconftest)
fi
timeout 120 "$PY" -m pytest -q -p no:cacheprovider "${extra[@]}" "${tests[@]}" >"$WORK/pytest.log" 2>&1
echo "$?" >"$WORK/pytest.rc"

# 3-5. benchmarks ----------------------------------------------------------------------------
stage kcenter
timeout 150 "$PY" - <<'EOF' >"$WORK/kcenter.json" 2>"$WORK/kcenter.err"
import json, time
import numpy as np
import torch
import curate.select.kcenter as kc

N, D, K = 10_000_000, 256, 1000
dev = torch.device("cuda")
sync = torch.cuda.synchronize
g = torch.Generator(device=dev).manual_seed(0)
Xg = torch.randn(N, D, device=dev, generator=g)
X = Xg.cpu().numpy()                                    # the host array curate receives
Xh = Xg.half(); del Xg
def best(fn, r=5):
    ts = []
    for _ in range(r):
        sync(); t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
    return min(ts)
bw16 = Xh.nbytes / best(lambda: Xh.sum(dtype=torch.float32)) / 1e9   # HBM read GB/s
del Xh; torch.cuda.empty_cache()
t = time.perf_counter(); sq = kc._row_sq_norms(X, X, "euclidean"); t_norms = time.perf_counter() - t
def loop(k, fp16):
    sync(); t = time.perf_counter()
    idx, _ = kc._run_torch(X, sq, k, np.empty(0, np.int64), 0, "euclidean", kc._CHUNK_CUDA, "cuda", fp16)
    sync(); return time.perf_counter() - t, idx
out = {"n": N, "d": D, "k": K, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
       "hbm_read_gb_s": round(bw16, 1), "host_norms_s": round(t_norms, 2)}
for name, fp16, b in (("fp16", True, 2), ("fp32", False, 4)):
    t1, _ = loop(1, fp16)                               # transfer + norms, no step
    tk, idx = loop(K, fp16)
    steps = tk - t1
    bound = (K - 1) * N * D * b / (bw16 * 1e9)         # K - 1 steps read X once each
    out[name] = {"call_with_transfer_s": round(tk, 3), "transfer_s": round(t1, 3),
                 "loop_s": round(steps, 3), "bound_s": round(bound, 3),
                 "loop_over_bound": round(steps / bound, 2),
                 "loop_gb_s": round((K - 1) * N * D * b / steps / 1e9, 1)}
    out[name + "_picks"] = idx[:20].tolist()
out["fp16_fp32_same_first_20"] = out.pop("fp16_picks") == out.pop("fp32_picks")
sync(); t = time.perf_counter()
kc.kcenter_greedy(X, K, device="cuda", fp16=True, random_state=0)
out["end_to_end_fp16_s"] = round(time.perf_counter() - t, 2)
print(json.dumps(out))
EOF
echo "$?" >"$WORK/kcenter.rc"

stage faiss
timeout 90 "$PY" - <<'EOF' >"$WORK/faiss.json" 2>"$WORK/faiss.err"
import json, time
import numpy as np
from curate.novelty._faiss import build_index, gpu_available
if not gpu_available():
    print(json.dumps({"skipped": "faiss sees no GPU (faiss-gpu not installed?)"})); raise SystemExit
rng = np.random.default_rng(0)
R = rng.standard_normal((1_000_000, 128), dtype=np.float32); R /= np.linalg.norm(R, axis=1, keepdims=True)
Q = rng.standard_normal((100_000, 128), dtype=np.float32); Q /= np.linalg.norm(Q, axis=1, keepdims=True)
res = {}
for dev in ("gpu", "cpu"):
    ix = build_index(R, "flat", device=dev)
    ix.search(Q[:1000], 50)
    t = time.perf_counter(); _, I = ix.search(Q, 50); res[dev] = (time.perf_counter() - t, I)
agree = np.mean([len(np.intersect1d(a, b)) / 50 for a, b in zip(res["gpu"][1][:2000], res["cpu"][1][:2000])])
print(json.dumps({"gpu_s": round(res["gpu"][0], 3), "cpu_s": round(res["cpu"][0], 3),
                  "speedup": round(res["cpu"][0] / res["gpu"][0], 1), "neighbour_agreement": round(float(agree), 4)}))
EOF
echo "$?" >"$WORK/faiss.rc"

stage embed
timeout 150 "$PY" - <<'EOF' >"$WORK/embed.json" 2>"$WORK/embed.err"
import json, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch, torchvision
from curate.encoders.torchvision_backbones import TorchvisionEncoder

work = Path(os.environ["CURATE_GPU_WORK"])
torch.manual_seed(0)
torch.save(torchvision.models.resnet50(weights=None).state_dict(), work / "r50.pth")
enc = TorchvisionEncoder("resnet50", work / "r50.pth", 224).to(torch.device("cuda"))
x = torch.randn(256, 3, 224, 224, device="cuda")
out = {}
for name, amp in (("fp32", False), ("amp_fp16", True)):
    def run():
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):   # as curate.embed does
            return enc.encode(x)
    for _ in range(3): run()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20): z = run()
    torch.cuda.synchronize()
    out[f"encoder_{name}_images_s"] = round(20 * 256 / (time.perf_counter() - t))
with torch.autocast("cuda", dtype=torch.float16):
    za = enc.encode(x[:64]).float()
zf = enc.encode(x[:64]).float()
out["amp_vs_fp32_max_rel_err"] = float(((za - zf).norm(dim=1) / zf.norm(dim=1)).max())
try:
    import sqlalchemy, curate.embed  # noqa: F401  (installed curate: the end-to-end run)
except ImportError as e:
    out["end_to_end"] = f"skipped: {e}"
else:
    from PIL import Image
    from concurrent.futures import ThreadPoolExecutor
    img = work / "imgs"; img.mkdir()
    rng = np.random.default_rng(0)
    arrs = rng.integers(0, 256, (20_000, 64, 64, 3), dtype=np.uint8)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: Image.fromarray(arrs[i]).save(img / f"{i:05d}.png"), range(len(arrs))))
    cur = [sys.executable, "-m", "curate", "-w", str(work / "ws")]
    subprocess.run(cur[:-2] + ["init", str(work / "ws")], check=True, capture_output=True)
    subprocess.run(cur + ["ingest", str(img), "--json"], check=True, capture_output=True)
    t = time.perf_counter()
    p = subprocess.run(cur + ["embed", "--encoder", "resnet50", "--weights", str(work / "r50.pth"),
                              "--image-size", "224", "--device", "cuda", "--batch-size", "256",
                              "--workers", "12", "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    rep = json.loads(p.stdout[p.stdout.index("{"):]) if p.returncode == 0 else {"error": p.stderr[-300:]}
    out["end_to_end"] = {"images": 20_000, "wall_s": round(wall, 1), **{k: rep.get(k) for k in
                         ("embedded", "seconds", "images_per_second", "device", "error")}}
print(json.dumps(out))
EOF
echo "$?" >"$WORK/embed.rc"

# one JSON -----------------------------------------------------------------------------------
stage report
"$PY" - "$START" <<'EOF'
import json, os, re, sys, time
from pathlib import Path
w = Path(os.environ["CURATE_GPU_WORK"])
def part(name):
    rc = int((w / f"{name}.rc").read_text()) if (w / f"{name}.rc").exists() else None
    try:
        lines = (w / f"{name}.json").read_text().strip().splitlines()
        return json.loads(lines[-1]) if lines else {"error": f"rc {rc}", "stderr": (w / f"{name}.err").read_text()[-600:]}
    except (OSError, ValueError):
        err = (w / f"{name}.err").read_text()[-600:] if (w / f"{name}.err").exists() else ""
        return {"error": f"rc {rc}" + (" (timed out)" if rc == 124 else ""), "stderr": err}
log = (w / "pytest.log").read_text() if (w / "pytest.log").exists() else ""
summary = [l for l in log.splitlines() if re.search(r"\d+ (passed|failed|error)", l)]
try:
    import torch
    env = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
except ImportError:
    env = {"torch": None}
res = {"env": env, **json.loads((w / "install.json").read_text()),
       "tests": {"rc": int((w / "pytest.rc").read_text()), "summary": summary[-1] if summary else log[-400:]},
       "kcenter": part("kcenter"), "faiss": part("faiss"), "embed": part("embed"),
       "total_s": int(time.time()) - int(sys.argv[1])}
text = json.dumps(res, indent=2)
for d in [Path("benchmarks/results")] + ([Path(os.environ["OUT"])] if os.environ.get("OUT") else []):
    d.mkdir(parents=True, exist_ok=True)
    (d / "gpu_check.json").write_text(text + "\n")
print(text)
EOF
