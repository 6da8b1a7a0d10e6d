#!/usr/bin/env bash
# spd train checkpoints and --resume: model_<s> / resume_<s> at save_freq and the
# last step with SPD's state-dict names; N steps (--stop-at) + resume equals an
# uninterrupted run bit for bit (every tensor, metrics.jsonl) for tied TMS and
# ResidMLP; a crash between a checkpoint's temporary file and its rename
# (SPD_TEST_FAIL_SAVE) leaves the previous checkpoint intact and no partial file,
# and the run resumes from it; SIGINT / SIGTERM end the step, save, exit 130 / 143,
# and resume bit-exactly; --resume on a missing or corrupt run dir: one line, exit 2.
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }

write_config() {  # $1 = file, $2 = task, $3 = steps, $4 = save_freq, $5 = batch, $6 = train_log_freq
    local pattern="linear*"
    [ "$2" = resid_mlp ] && pattern="layers.*.mlp_*"
    cat >"$1" <<YAML
seed: 3
n_mask_samples: 1
ci_fn_type: mlp
ci_fn_hidden_dims: [4]
module_info:
  - module_pattern: "$pattern"
    C: 6
loss_metric_configs:
  - classname: ImportanceMinimalityLoss
    coeff: 3e-3
    pnorm: 1.0
    beta: 0.0
  - classname: StochasticReconLoss
    coeff: 1.0
  - classname: FaithfulnessLoss
    coeff: 1.0
output_loss_type: mse
batch_size: $5
steps: $3
save_freq: $4
lr_schedule:
  start_val: 1e-2
  fn_type: cosine
  final_val_frac: 0.1
  warmup_pct: 0.1
faithfulness_warmup_steps: 5
train_log_freq: $6
eval_freq: 1000
n_eval_steps: 1
pretrained_model_class: spd.experiments.tms.models.TMSModel
task_config:
  task_name: $2
  feature_probability: 0.2
YAML
}

run_dir() { find "$1/spd" -mindepth 1 -maxdepth 1 -type d | head -1; }

# Tensor names, dtypes, shapes and bytes of a safetensors file, one line each
# (metadata left out), and the metadata alone.
tensors() {
    python3 - "$1" <<'PY'
import hashlib, json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h.pop("__metadata__", None)
for k in sorted(h):
    v = h[k]
    s, e = v["data_offsets"]
    print(k, v["dtype"], v["shape"], hashlib.sha256(b[8 + n + s:8 + n + e]).hexdigest())
PY
}
meta() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(json.loads(b[8:8 + n]).get("__metadata__", {}).get(sys.argv[2], ""))
PY
}
same_tensors() { [ -f "$1" ] && [ -f "$2" ] && [ "$(tensors "$1")" = "$(tensors "$2")" ]; }

# (a) 2N uninterrupted vs N (--stop-at N) + --resume, tied TMS and ResidMLP.
N=20
for task in tms resid_mlp; do
    write_config "$tmp/$task.yaml" $task $((2 * N)) $N 32 5
    extra="--tied"
    [ $task = resid_mlp ] && extra="--act gelu --target-seed 4"
    SPD_OUT_DIR="$tmp/full_$task" "$SPD" train "$tmp/$task.yaml" $extra >"$tmp/out" 2>"$tmp/err"
    rc1=$?
    SPD_OUT_DIR="$tmp/half_$task" "$SPD" train "$tmp/$task.yaml" $extra --stop-at $N >"$tmp/out2" 2>"$tmp/err2"
    rc2=$?
    f=$(run_dir "$tmp/full_$task")
    h=$(run_dir "$tmp/half_$task")
    if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ -f "$h/model_$N.safetensors" ] && [ -f "$h/resume_$N.safetensors" ] &&
        [ ! -e "$h/model_$((2 * N)).safetensors" ]; then
        ok "$task: --stop-at $N saves model_$N and resume_$N and exits 0"
    else
        notok "$task: --stop-at $N" "rc $rc1 $rc2 $(head -2 "$tmp/err2")"
    fi
    "$SPD" train --resume "$h" >"$tmp/out3" 2>"$tmp/err3"
    rc3=$?
    if [ $rc3 -eq 0 ] && same_tensors "$f/model_$((2 * N)).safetensors" "$h/model_$((2 * N)).safetensors" &&
        same_tensors "$f/resume_$((2 * N)).safetensors" "$h/resume_$((2 * N)).safetensors" &&
        same_tensors "$f/model_$N.safetensors" "$h/model_$N.safetensors" && cmp -s "$f/metrics.jsonl" "$h/metrics.jsonl"; then
        ok "$task: $N steps + --resume to $((2 * N)) equals $((2 * N)) uninterrupted steps bit for bit (tensors, Adam state, metrics.jsonl)"
    else
        notok "$task: resume bit-exact" "rc $rc3 $(head -2 "$tmp/err3")"
    fi
    if grep -q "^resuming from .*resume_$N.safetensors (step $N, adam_t $N)" "$tmp/out3" &&
        [ "$(grep -c '"train/' "$h/metrics.jsonl")" -eq $((2 * N / 5 + 1)) ]; then
        ok "$task: --resume names its checkpoint; metrics.jsonl has no duplicated step"
    else
        notok "$task: resume output" "$(grep resum "$tmp/out3")"
    fi
done

f=$(run_dir "$tmp/full_tms")
names=$(tensors "$f/model_40.safetensors" | cut -d' ' -f1 | tr '\n' ' ')
want="_ci_fns.linear1.layers.0.W _ci_fns.linear1.layers.0.b _ci_fns.linear1.layers.2.W _ci_fns.linear1.layers.2.b \
_ci_fns.linear2.layers.0.W _ci_fns.linear2.layers.0.b _ci_fns.linear2.layers.2.W _ci_fns.linear2.layers.2.b \
_components.linear1.U _components.linear1.V _components.linear2.U _components.linear2.V _components.linear2.bias \
target_model.linear1.weight target_model.linear2.bias target_model.linear2.weight "
if [ "$names" = "$want" ] && [ "$(meta "$f/model_40.safetensors" format)" = spd-checkpoint-v1 ] &&
    [ "$(meta "$f/model_40.safetensors" step)" = 40 ] && case "$(meta "$f/model_40.safetensors" config)" in *"save_freq: 20"*) true ;; *) false ;; esac &&
    [ "$(meta "$f/resume_40.safetensors" adam_t)" = 40 ] && [ "$(meta "$f/resume_40.safetensors" tied)" = linear1:linear2 ] &&
    case "$(tensors "$f/resume_40.safetensors")" in *"adam.v._ci_fns.linear2.layers.2.b F64"*) true ;; *) false ;; esac; then
    ok "model_<s>: SPD's state-dict names (tied target under both names, _components.*.bias), format/step/config metadata; resume_<s>: adam.m/v.*, adam_t, tied"
else
    notok "checkpoint names and metadata" "$names"
fi
ls "$f" | grep -q '^model_20.safetensors$' && ls "$f" | grep -q '^model_40.safetensors$' &&
    [ "$(ls "$f" | grep -c '^model_')" -eq 2 ] &&
    ok "save_freq 20, steps 40: model_20 and model_40 (not model_0)" || notok "save cadence" "$(ls "$f")"

# (b) a crash between the temporary file and the rename of model_40.
h="$tmp/crash"
{ SPD_OUT_DIR="$h" SPD_TEST_FAIL_SAVE=model_40 "$SPD" train "$tmp/tms.yaml" --tied >/dev/null 2>&1; rc=$?; } 2>/dev/null
h=$(run_dir "$h")
if [ $rc -eq 137 ] && [ ! -e "$h/model_40.safetensors" ] && [ ! -e "$h/resume_40.safetensors" ] &&
    ls "$h" | grep -q '^model_40.safetensors.tmp' && same_tensors "$f/model_20.safetensors" "$h/model_20.safetensors" &&
    cmp -s "$f/resume_20.safetensors" "$h/resume_20.safetensors"; then
    ok "killed between the temporary file and the rename: no model_40 nor resume_40, model_20/resume_20 intact"
else
    notok "crash mid-save" "rc $rc $(ls "$h" | tr '\n' ' ')"
fi
if "$SPD" train --resume "$h" >/dev/null 2>"$tmp/err" && same_tensors "$f/model_40.safetensors" "$h/model_40.safetensors" &&
    cmp -s "$f/metrics.jsonl" "$h/metrics.jsonl"; then
    ok "resuming after the crash from model_20 reproduces the uninterrupted run"
else
    notok "resume after crash" "$(head -2 "$tmp/err")"
fi

# (c) SIGINT / SIGTERM a running training, resume to the end, compare with an uninterrupted run.
write_config "$tmp/long.yaml" tms 2000 500 256 100
SPD_OUT_DIR="$tmp/long_full" "$SPD" train "$tmp/long.yaml" --tied >/dev/null 2>&1
lf=$(run_dir "$tmp/long_full")
for sig in INT TERM; do
    want_rc=130
    [ $sig = TERM ] && want_rc=143
    SPD_OUT_DIR="$tmp/long_$sig" "$SPD" train "$tmp/long.yaml" --tied >"$tmp/out_$sig" 2>&1 &
    pid=$!
    for _ in $(seq 100); do  # until the loop runs (the first step line), then a moment more
        grep -q '^step ' "$tmp/out_$sig" 2>/dev/null && break
        sleep 0.05
    done
    sleep 0.3
    kill -$sig $pid
    wait $pid
    rc=$?
    d=$(run_dir "$tmp/long_$sig")
    s=$(sed -n 's/^interrupted by SIG[A-Z]* after step \([0-9]*\):.*/\1/p' "$tmp/out_$sig")
    if [ $rc -eq $want_rc ] && [ -n "$s" ] && [ -f "$d/resume_$((s + 1)).safetensors" ] &&
        [ "$(meta "$d/resume_$((s + 1)).safetensors" logged)" = 0 ]; then
        ok "SIG$sig after step $s: model_$((s + 1)) and resume_$((s + 1)) saved, exit $want_rc"
    else
        notok "SIG$sig" "rc $rc (want $want_rc) $(tail -2 "$tmp/out_$sig")"
    fi
    if "$SPD" train --resume "$d" >/dev/null 2>"$tmp/err" && same_tensors "$lf/model_2000.safetensors" "$d/model_2000.safetensors" &&
        same_tensors "$lf/resume_2000.safetensors" "$d/resume_2000.safetensors" && cmp -s "$lf/metrics.jsonl" "$d/metrics.jsonl"; then
        ok "SIG$sig + --resume equals the uninterrupted run bit for bit"
    else
        notok "SIG$sig + resume bit-exact" "$(head -2 "$tmp/err")"
    fi
done

# (d) --resume refusals: one line, exit 2.
mkdir -p "$tmp/empty"
cp -r "$f" "$tmp/corrupt"
head -c 100 "$f/resume_40.safetensors" >"$tmp/corrupt/resume_40.safetensors"
cp -r "$f" "$tmp/corrupt_model"
printf 'garbage' >"$tmp/corrupt_model/model_40.safetensors"
cp -r "$f" "$tmp/noconfig"
rm "$tmp/noconfig/final_config.yaml"
mkdir -p "$tmp/nockpt"
cp "$f/final_config.yaml" "$f/metrics.jsonl" "$tmp/nockpt/"
for case in "missing:$tmp/nope" "empty:$tmp/empty" "corrupt resume:$tmp/corrupt" "corrupt model:$tmp/corrupt_model" \
    "no config:$tmp/noconfig" "checkpoint-less:$tmp/nockpt"; do
    what=${case%%:*}
    dir=${case#*:}
    "$SPD" train --resume "$dir" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -s "$tmp/out" ]; then
        ok "--resume on the $what run dir: one line, exit 2 ($(cat "$tmp/err"))"
    else
        notok "--resume on the $what run dir" "rc $rc $(head -3 "$tmp/err")"
    fi
done
