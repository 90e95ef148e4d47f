#!/usr/bin/env bash
# Rehearse the blog profile offline, end to end, at the real shapes (README, "Rehearsing the blog profile").
#
# 1. `vlm-grpo rehearsal-inputs` writes, under data/raw/ (gitignored), CLEVR and SuperCLEVR in the real datasets'
#    layouts and a Qwen2-VL-2B-Instruct stand-in (real widths, vocabulary, special tokens and image processor;
#    REHEARSAL_TEXT_LAYERS text layers; random weights), where the blog profile looks before the hub.
# 2. A scratch copy of this repository's working tree (a clone plus uncommitted changes) runs
#    `dvc exp run -S profile=blog` with only locations and sizes overridden: fetch to report, through the stage
#    commands of dvc.yaml. This workspace, its DVC cache and its experiments are left untouched.
# The report it ends with holds the stand-in's (meaningless) numbers; what the rehearsal shows is that the
# code path runs. Usage: bash scripts/rehearse_blog.sh [SCRATCH_DIR]   (default: .rehearsal/, gitignored)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/.rehearsal}
raw=$repo/data/raw
layers=${REHEARSAL_TEXT_LAYERS:-1}
start=$(date +%s)

if [ ! -f "$raw/Qwen2-VL-2B-Instruct/config.json" ] || [ ! -d "$raw/superclevr" ] || [ ! -d "$raw/clevr_cogen_a_train" ]; then
  vlm-grpo rehearsal-inputs --raw "$raw" --text-layers "$layers"
fi

rm -rf "$work"
git clone -q "$repo" "$work"
# the working tree as it is: uncommitted changes and untracked (not ignored) files too
git -C "$repo" diff HEAD --binary > "$work/.uncommitted.patch"
[ -s "$work/.uncommitted.patch" ] && git -C "$work" apply .uncommitted.patch
rm -f "$work/.uncommitted.patch"
git -C "$repo" ls-files --others --exclude-standard -z | (cd "$repo" && xargs -0 -r cp --parents -t "$work")

cd "$work"
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"   # the clone's code, not the editable install's
dvc exp run -n blog-rehearsal \
  -S profile=blog -S 'seeds=[0]' \
  -S "fetch_data.raw_dir=$raw" -S "fetch_model.local_dir=$raw/Qwen2-VL-2B-Instruct" \
  -S fetch_data.clevr_eval_rows=8 -S fetch_data.superclevr_check=false \
  -S ++profiles.blog.baseline_assess.n_questions=4 -S ++profiles.blog.baseline_assess.batch_size=4 \
  -S ++profiles.blog.train.steps=2 -S ++profiles.blog.train.prompts_per_step=2 -S ++profiles.blog.train.group_size=2 \
  -S ++profiles.blog.eval.clevr_questions=4 -S ++profiles.blog.eval.batch_size=4

echo "rehearse_blog: done in $(( $(date +%s) - start )) s; report: $work/reports/report.md"
