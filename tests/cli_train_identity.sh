#!/usr/bin/env bash
# spd train with identity_module_info (SPD_SPEC.md 1.3): SPD's tms_5-2-id experiment
# (its target from spd train-target, shortened) with an identity inserted before
# linear1 trains; the identity is decomposed as linear1.pre_identity and checkpointed
# under SPD's state-dict names (_components.linear1-pre_identity.V/U, _ci_fns...;
# nothing under target_model., no bias: SPD's Identity has no state); a resumed run
# is bit for bit the uninterrupted one; SPD's test_tms / test_resid_mlp configs run;
# identity patterns SPD rejects are refused with one line (exit 2).
set -u
SPD=${SPD_BIN:-build/spd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1${2:+: $2}"; }
run_dir() { find "$1/spd" -mindepth 1 -maxdepth 1 -type d | head -1; }

# configs/tms_5-2-id.yaml (a fixed identity hidden layer) + an inserted identity before
# linear1, shortened: batch 64, 6 steps, warm-up 5, its target trained for 300 steps.
"$SPD" train-target --experiment tms_5-2-id --steps 300 --out "$tmp/target.safetensors" >/dev/null 2>"$tmp/err" ||
    notok "train-target tms_5-2-id" "$(head -2 "$tmp/err")"
sed -e 's/^use_delta_component: true$/identity_module_info:\n  - module_pattern: "linear1"\n    C: 20\nuse_delta_component: true/' \
    -e 's/^batch_size: 4096$/batch_size: 64/' -e 's/^eval_batch_size: 4096$/eval_batch_size: 64/' \
    -e 's/^steps: 10000$/steps: 6/' -e 's/^faithfulness_warmup_steps: 200$/faithfulness_warmup_steps: 5/' \
    -e 's/^train_log_freq: 100$/train_log_freq: 2/' \
    -e "s|^pretrained_model_path: .*|pretrained_model_path: $tmp/target.safetensors|" \
    configs/tms_5-2-id.yaml >"$tmp/id.yaml"
grep -q 'module_pattern: "linear1"' "$tmp/id.yaml" && grep -q '^steps: 6$' "$tmp/id.yaml" ||
    notok "derived config" "$(grep -n 'identity\|steps' "$tmp/id.yaml" | head -3)"

if SPD_OUT_DIR="$tmp/a" "$SPD" train "$tmp/id.yaml" >"$tmp/out" 2>"$tmp/err"; then
    d=$(run_dir "$tmp/a")
    grep -q '^ *linear1.pre_identity C 20$' "$tmp/out" && grep -q '^ *hidden_layers.0 C 20$' "$tmp/out" &&
        ok "tms_5-2-id + identity_module_info linear1: trains, decomposing linear1.pre_identity (C 20)" ||
        notok "tms_5-2-id + identity: start-up table" "$(grep -A5 modules "$tmp/out")"
    "$SPD" info "$d/model_6.safetensors" >"$tmp/info" 2>&1
    missing=""
    for row in '_components.linear1-pre_identity.V +F64 +\[5, 20\]' '_components.linear1-pre_identity.U +F64 +\[20, 5\]' \
        '_ci_fns.linear1-pre_identity.layers.0.W +F64 +\[20, 1, 16\]' '_ci_fns.linear1-pre_identity.layers.2.b ' \
        '_components.linear1.V ' '_components.hidden_layers-0.V ' 'target_model.hidden_layers.0.weight '; do
        grep -Eq "^  $row" "$tmp/info" || missing="$missing [$row]"
    done
    extra=$(grep -E '^  (target_model\.[^ ]*pre_identity|_components\.linear1-pre_identity\.bias)' "$tmp/info")
    if [ -z "$missing" ] && [ -z "$extra" ]; then
        ok "model_6: the identity's components and CI fn under SPD's names, nothing else for it (no target weight, no bias)"
    else
        notok "model_6 names" "missing$missing; extra: $extra"
    fi
    grep -q '"train/l0/linear1.pre_identity"' "$d/metrics.jsonl" &&
        ok "metrics.jsonl logs train/l0/linear1.pre_identity" || notok "l0 of the identity logged"
    # The eval pass (step 0 and the last step) builds its own target: the identity must be in it too.
    grep -q '"l0/0.1_linear1.pre_identity"' "$d/metrics.jsonl" && ! grep -q 'nan' "$d/metrics.jsonl" &&
        ok "the eval lines cover linear1.pre_identity, no NaN" ||
        notok "eval of the identity" "$(grep -o '"l0/[^"]*"' "$d/metrics.jsonl" | sort -u | tr '\n' ' ')"

    # Interrupted at step 3 and resumed: the same model_6, bit for bit.
    SPD_OUT_DIR="$tmp/b" "$SPD" train "$tmp/id.yaml" --stop-at 3 >/dev/null 2>&1
    db=$(run_dir "$tmp/b")
    if [ -n "$db" ] && "$SPD" train --resume "$db" >/dev/null 2>"$tmp/err" && cmp -s "$d/model_6.safetensors" "$db/model_6.safetensors"; then
        ok "an identity run resumed from step 3 ends bit for bit as the uninterrupted one"
    else
        notok "identity run resume" "$(head -2 "$tmp/err")"
    fi
else
    notok "tms_5-2-id + identity_module_info trains" "$(head -3 "$tmp/err")"
fi

# SPD's own test configurations (random targets, as those tests build them).
if SPD_OUT_DIR="$tmp/c" "$SPD" train tests/configs/tms_identity.yaml --n-hidden-layers 1 --tied >"$tmp/out" 2>"$tmp/err" &&
    grep -q '^ *linear1.pre_identity C 10$' "$tmp/out" && grep -q '^ *linear2 C 10 (tied)$' "$tmp/out"; then
    ok "SPD's test_tms configuration (tied 5-2, 1 hidden layer, identity before linear1) trains"
else
    notok "tests/configs/tms_identity.yaml trains" "$(head -2 "$tmp/err")"
fi
if SPD_OUT_DIR="$tmp/r" "$SPD" train tests/configs/resid_mlp_identity.yaml --n-features 5 --d-embed 4 --d-mlp 6 \
    --n-layers 2 >"$tmp/out" 2>"$tmp/err"; then
    "$SPD" info "$(run_dir "$tmp/r")/model_3.safetensors" >"$tmp/info" 2>&1
    grep -Eq '^  _components.layers-1-mlp_in-pre_identity.V +F64 +\[4, 10\]' "$tmp/info" &&
        grep -Eq '^  _components.layers-0-mlp_in-pre_identity.U +F64 +\[10, 4\]' "$tmp/info" &&
        ok "SPD's test_resid_mlp configuration trains; layers.<i>.mlp_in.pre_identity [d_embed, d_embed] checkpointed" ||
        notok "resid_mlp identity names" "$(grep pre_identity "$tmp/info" | head -3)"
else
    notok "tests/configs/resid_mlp_identity.yaml trains" "$(head -2 "$tmp/err")"
fi

# Patterns SPD rejects: exit 2, one line on stderr naming the problem.
refuses() {  # description, sed expression on the derived config, expected stderr pattern
    sed -e "$2" "$tmp/id.yaml" >"$tmp/bad.yaml"
    SPD_OUT_DIR="$tmp/x" "$SPD" train "$tmp/bad.yaml" >/dev/null 2>"$tmp/err"
    local rc=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "$3" "$tmp/err"; then
        ok "refuses $1 (exit 2: $(cat "$tmp/err"))"
    else
        notok "refuses $1" "rc $rc, $lines lines: $(head -3 "$tmp/err")"
    fi
}
refuses "an identity pattern matching no module" 's/  - module_pattern: "linear1"$/  - module_pattern: "linear9"/' \
    "identity_module_info\[0\]: pattern 'linear9' matches no linear module"
refuses "a module_info pattern that also matches the inserted identity" 's/^  - module_pattern: "linear2"$/  - module_pattern: "linear1.*"/' \
    "'linear1.pre_identity' is matched by two patterns"
