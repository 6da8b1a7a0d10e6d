#!/usr/bin/env bash
# spd config check: the good configs print their resolved form (which checks
# again to the same text), every malformed fixture gives one line on stderr
# naming the file, position and key path (its "# expect:" line) and exit 2, old
# keys are migrated with notes. Where SPD's source is at .peer/spd, all of its
# experiment configs are checked too, and (with pydantic) compared value by
# value with what SPD's own Config resolves them to.
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

for f in tests/configs/ss_llama_simple.yaml tests/configs/tms_5-2.yaml tests/configs/resid_mlp1.yaml \
    tests/configs/minimal.yaml tests/configs/numbers.yaml tests/configs/old_keys.yaml \
    tests/configs/tms_identity.yaml tests/configs/resid_mlp_identity.yaml; do
    name=$(basename "$f")
    if ! "$SPD" config check "$f" >"$tmp/out.yaml" 2>"$tmp/err"; then
        notok "spd config check $name" "$(head -3 "$tmp/err")"
        continue
    fi
    if ! "$SPD" config check "$tmp/out.yaml" >"$tmp/again.yaml" 2>"$tmp/err2" || [ -s "$tmp/err2" ]; then
        notok "the resolved $name checks cleanly" "$(head -3 "$tmp/err2")"
        continue
    fi
    # Identical apart from the first line (the comment naming the source file).
    if diff <(tail -n +2 "$tmp/out.yaml") <(tail -n +2 "$tmp/again.yaml") >/dev/null; then
        ok "spd config check $name: exit 0, and its resolved output ($(wc -l <"$tmp/out.yaml") lines) resolves to itself"
    else
        notok "resolved $name is a fixed point" "$(diff <(tail -n +2 "$tmp/out.yaml") <(tail -n +2 "$tmp/again.yaml") | head -5)"
    fi
done

# Defaults appear in the resolved output under SPD's names.
"$SPD" config check tests/configs/minimal.yaml >"$tmp/min.yaml" 2>/dev/null
missing=""
for line in 'train_log_freq: 50' 'eval_batch_size: 4' 'slow_eval_freq: 10' 'ci_fn_type: vector_mlp' \
    'ci_fn_hidden_dims: \[8\]' 'sigmoid_type: leaky_hard' 'faithfulness_warmup_lr: 0.001' \
    '  dataset_name: "lennart-finke/SimpleStories"' '  fn_type: constant' '  final_val_frac: 1.0'; do
    grep -q "^$line\$" "$tmp/min.yaml" || missing="$missing [$line]"
done
[ -z "$missing" ] && ok "minimal.yaml resolves with SPD's defaults written out" || notok "defaults written" "missing$missing"

"$SPD" config check tests/configs/numbers.yaml >"$tmp/num.yaml" 2>/dev/null
grep -q '^steps: 400000$' "$tmp/num.yaml" && grep -q '^  start_val: 0.0003$' "$tmp/num.yaml" &&
    ok "400_000 and 3e-4 resolve to 400000 and 0.0003" || notok "400_000 and 3e-4 resolve as numbers"

# Old keys: migrated, one note per migration on stderr.
"$SPD" config check tests/configs/old_keys.yaml >/dev/null 2>"$tmp/notes"
missing=""
for note in 'old keys C and target_module_patterns migrated to module_info' \
    'old keys lr, lr_schedule, lr_warmup_pct migrated to lr_schedule' 'old key print_freq renamed to eval_freq' \
    'old key gate_type renamed to ci_fn_type' 'deprecated key pnorm dropped (value: 2.0)' \
    'old key eval_metrics dropped' 'loss_metric_configs\[1\] dropped: old metric config with extra_init_kwargs' \
    'pretrained_model_class simple_stories_train.models.llama.Llama moved to spd.pretrain.models.llama.Llama'; do
    grep -q "^spd: note: tests/configs/old_keys.yaml:[0-9]*:[0-9]*: $note" "$tmp/notes" || missing="$missing [$note]"
done
[ -z "$missing" ] && ok "old keys are migrated with a note each ($(wc -l <"$tmp/notes") notes)" ||
    notok "migration notes" "missing$missing"

# Every malformed fixture: exit 2, one line, "spd: <file><expected message>".
n=0
for f in tests/configs/bad_*.yaml; do
    n=$((n + 1))
    want="spd: $f$(sed -n 's/^# expect: //p' "$f" | head -1)"
    "$SPD" config check "$f" >"$tmp/out" 2>"$tmp/err"
    status=$?
    lines=$(wc -l <"$tmp/err")
    if [ $status -eq 2 ] && [ "$lines" -eq 1 ] && [ "$(cat "$tmp/err")" = "$want" ] && [ ! -s "$tmp/out" ]; then
        ok "$(basename "$f"): exit 2, $(cut -c1-150 "$tmp/err")"
    else
        notok "$(basename "$f")" "status $status, $lines lines: $(head -2 "$tmp/err") (wanted: $want)"
    fi
done
[ $n -ge 40 ] && ok "$n malformed-config fixtures" || notok "malformed-config fixtures" "only $n"

expect_usage_error() {  # name pattern args...
    local name=$1 pattern=$2
    shift 2
    "$SPD" "$@" >/dev/null 2>"$tmp/err"
    local status=$?
    if [ $status -eq 2 ] && grep -q -- "$pattern" "$tmp/err"; then ok "$name (exit 2)"; else
        notok "$name" "status $status: $(head -2 "$tmp/err")"; fi
}
expect_usage_error "spd config without a subcommand prints usage" "usage: spd config check" config
expect_usage_error "an unknown config subcommand is refused" "config: unknown subcommand 'frob'" config frob
expect_usage_error "spd config check without a file prints usage" "usage: spd config check" config check
expect_usage_error "two files are refused" "expected one CONFIG file" config check a.yaml b.yaml
expect_usage_error "an unknown option is refused" "unknown option '--frob'" config check --frob x.yaml
expect_usage_error "a missing file is named" "spd: tests/configs/nope.yaml: cannot open: No such file" \
    config check tests/configs/nope.yaml
"$SPD" config check --help >/dev/null 2>&1 && ok "spd config check --help exits 0" || notok "spd config check --help"

# SPD's own configs (its source is git-ignored at .peer/spd; skipped without it).
peer=.peer/spd/spd/experiments
if [ -d "$peer" ]; then
    good=0 bad=""
    for f in "$peer"/*/*.yaml; do
        case $(basename "$f") in
        pile_llama_simple_mlp-*) # use PersistentPGDReconSubsetLoss, which SPD's HEAD Config refuses too
            "$SPD" config check "$f" >/dev/null 2>&1 && bad="$bad $(basename "$f")(accepted)" ;;
        *) if "$SPD" config check "$f" >/dev/null 2>"$tmp/err"; then good=$((good + 1)); else
            bad="$bad $(basename "$f")($(tail -1 "$tmp/err"))"; fi ;;
        esac
    done
    [ -z "$bad" ] && ok "all $good of SPD's experiment configs load" || notok "SPD's experiment configs" "$bad"
    if python3 -c 'import pydantic, yaml' 2>/dev/null; then
        SPD_OUT_DIR="$tmp/spd_out" PYTHONPATH=.peer/spd python3 - "$SPD" "$peer" tests/configs <<'PY' 2>"$tmp/py_err" || echo "not ok - pydantic comparison ran: $(tail -3 "$tmp/py_err")"
import glob, logging, subprocess, sys, yaml
logging.disable(logging.CRITICAL)
from spd.configs import Config
spd, peer, ours = sys.argv[1:4]
files = sorted(glob.glob(f"{peer}/*/*.yaml")) + sorted(f for f in glob.glob(f"{ours}/*.yaml") if "/bad_" not in f)
def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b: out.append(f"{path}.{k} missing on one side")
            else: diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)): diff(x, y, f"{path}[{i}]", out)
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: SPD {a!r}, spd.c {b!r}")
compared = 0
for f in files:
    try:
        ref = Config.from_file(f).model_dump(mode="json")
    except Exception:
        continue  # refused by SPD too (checked above)
    r = subprocess.run([spd, "config", "check", f], capture_output=True, text=True)
    out = []
    if r.returncode != 0: out.append("refused: " + r.stderr.strip().splitlines()[-1])
    else: diff(ref, yaml.safe_load(r.stdout), "", out)
    compared += 1
    print(("ok - " if not out else "not ok - ") + f"{f}: spd.c resolves it as SPD's pydantic Config does" +
          ("" if not out else ": " + "; ".join(out[:5])))
print(f"# compared {compared} configs with SPD's Config")
PY
    else
        echo "# skip: python3 with pydantic and yaml not found (comparison with SPD's Config)"
    fi
else
    echo "# skip: no .peer/spd (SPD's experiment configs)"
fi
