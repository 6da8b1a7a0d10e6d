#!/usr/bin/env bash
# "An imported checkpoint evaluates here as there": PyTorch SPD trains a TMS 5-2
# decomposition with its own code and evaluates its checkpoint itself
# (tests/refgen/spd_tms_eval_oracle.py); `spd import` reads SPD's model_<s>.pth (with its
# final_config.yaml) and `spd eval` evaluates it. Compared:
#   * deterministic metrics: MMCS and ML2R of linear1 (SPD's TMSAnalyzer, float64) within
#     1e-9 relative (found ~1e-11 to 1e-10: the analyzer's 1e-12 normalisation eps against torch's
#     cosine_similarity's; SPD's own float32 evaluation of the same float32 checkpoint is 5e-8 to
#     9e-8 away, reported); n_significant/linear1 (filter_significant_subnets) and every
#     target_solution_error/* (IdentityCIError) exactly;
#   * CI_L0 per module (different eval samples: SPD's dataset and generator vs spd.c's Philox
#     streams, 20 batches of 4096 each): |spd.c - SPD| <= 5 sqrt(2) se, se = SPD's standard
#     error of the per-position L0 (both means have about that error).
# Runs where the torch venv (.torch, with pydantic) and SPD's source (.peer/spd) exist
# (override: SPD_TORCH_PYTHON, SPD_PEER), else prints a skip line. About a minute on two cores
# (SPD's 2000 training steps at batch 1024 take most of it); SPD_ORACLE_STEPS shortens it.
set -u
SPD=${SPD_BIN:-build/spd}
PY=${SPD_TORCH_PYTHON:-.torch/bin/python}
PEER=${SPD_PEER:-.peer/spd}
if ! { [ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1; } || [ ! -d "$PEER/spd" ] ||
    ! "$PY" -c 'import torch, pydantic, yaml, safetensors, matplotlib' 2>/dev/null; then
    echo "# skip: no torch venv with pydantic at $PY or no SPD source at $PEER (spd eval against PyTorch SPD's own evaluation)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }
steps=${SPD_ORACLE_STEPS:-2000}

if ! "$SPD" train-target --experiment tms_5-2 --out "$tmp/target.safetensors" >"$tmp/tt.log" 2>&1; then
    notok "spd train-target tms_5-2 for the oracle" "$(tail -2 "$tmp/tt.log")"
    exit 1
fi
if ! PYTHONPATH="$PEER${PYTHONPATH:+:$PYTHONPATH}" "$PY" tests/refgen/spd_tms_eval_oracle.py --target "$tmp/target.safetensors" \
    --out "$tmp/spd" --steps "$steps" --n-eval-steps 20 >"$tmp/py.log" 2>&1; then
    notok "SPD trains and evaluates TMS 5-2 (spd_tms_eval_oracle.py)" "$(tail -3 "$tmp/py.log" | tr '\n' ' ')"
    exit 1
fi
ok "SPD trains TMS 5-2 ($steps steps) and evaluates its checkpoint itself ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["train_s"])' "$tmp/spd/oracle.json") s)"
if "$SPD" import "$tmp/spd/model_$steps.pth" >"$tmp/imp.log" 2>&1 && grep -q "metadata from final_config.yaml" "$tmp/imp.log"; then
    ok "spd import reads SPD's model_$steps.pth with its final_config.yaml"
else
    notok "spd import of SPD's checkpoint" "$(cat "$tmp/imp.log")"
    exit 1
fi
if "$SPD" eval "$tmp/spd/model_$steps.safetensors" --out "$tmp/e" --n-eval-steps 20 >"$tmp/eval.log" 2>&1; then
    ok "spd eval evaluates the imported checkpoint (SPD's final_config.yaml, float32 tensors widened)"
else
    notok "spd eval of the imported checkpoint" "$(tail -2 "$tmp/eval.log")"
    exit 1
fi
python3 - "$tmp/spd/oracle.json" "$tmp/e/metrics.jsonl" <<'PY'
import json, math, sys
spd = json.load(open(sys.argv[1]))
ours = json.loads(open(sys.argv[2]).read())
def report(good, name, why=""):
    print(("ok - " if good else "not ok - ") + name + ("" if good or not why else ": " + why))
report(ours["step"] == spd["step"], f"the same step ({spd['step']})", f"{ours['step']}")
worst, f32 = 0.0, 0.0
for k in ("mmcs/linear1", "ml2r/linear1"):
    worst = max(worst, abs(ours[k] - spd[k]) / abs(spd[k]))
    f32 = max(f32, abs(spd["float32"][k] - spd[k]) / abs(spd[k]))
report(worst <= 1e-9, f"MMCS {ours['mmcs/linear1']:.9f} / ML2R {ours['ml2r/linear1']:.9f} of linear1 = SPD's TMSAnalyzer "
       f"(float64) within 1e-9 relative (found {worst:.1e}; SPD float32 vs float64: {f32:.1e})",
       f"ours {ours['mmcs/linear1']!r} {ours['ml2r/linear1']!r}, SPD {spd['mmcs/linear1']!r} {spd['ml2r/linear1']!r}")
report(ours["n_significant/linear1"] == spd["n_significant/linear1"],
       f"n_significant/linear1 {ours['n_significant/linear1']} = SPD's filter_significant_subnets count",
       f"ours {ours['n_significant/linear1']}, SPD {spd['n_significant/linear1']}")
tse = sorted(k for k in spd if k.startswith("target_solution_error/"))
diff = [k for k in tse if ours.get(k) != spd[k]]
report(len(tse) == 4 and not diff, "IdentityCIError (target_solution_error/total, total_0p2, linear1, linear2) = SPD's: "
       + ", ".join(f"{k.split('/')[1]} {spd[k]}" for k in tse), ", ".join(f"{k}: ours {ours.get(k)} SPD {spd[k]}" for k in diff))
for m in ("linear1", "linear2"):
    k, se = f"l0/0.1_{m}", spd[f"l0_se/{m}"]
    z = abs(ours[k] - spd[k]) / (math.sqrt(2) * se)
    report(z <= 5, f"CI_L0 {m}: {ours[k]:.5f} vs SPD's {spd[k]:.5f} ({spd['n_eval_positions']} positions each; "
           f"{z:.2f} combined standard errors, bound 5)")
PY
