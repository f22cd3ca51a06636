#!/bin/sh
# Regenerates docs/REPRODUCTION.md: its fixed text (docs/reproduction/head.md), a summary line per
# study, and the per-claim tables of every study whose docs hold a claims report.
# Usage: scripts/reproduction.sh (from the repository's root; REPRODUCTION_OUT=FILE writes there
# instead, as the test that the committed page is up to date does)
set -eu
# Every docs folder of a study run, in the page's order.
studies="noise_sweep noise_sweep_n6 noise_sweep_2x_n6 noise_sweep_4x_n6 weak_images weak_images_n6 weak_images_2x_n6 weak_images_4x_n6 selfsup selfsup_n6 selfsup_svm selfsup_svm_wide_grid selfsup_jigsaw selfsup_jigsaw_n6 selfsup_jigsaw_svm selfsup_jigsaw_svm_benchmark_grid selfsup_jigsaw_tilenorm selfsup_jigsaw_tilenorm_n6 selfsup_multitask selfsup_multitask_n6 selfsup_multitask_svm selfsup_multitask_svm_benchmark_grid video/weak_videos video/weak_videos_n6 video/weak_videos_2x_n6 video/per_label video/per_label_n6 video/per_label_2x_n6 video/capacity video/capacity_n6 video/capacity_2x_n6 video/label_count video/label_count_n6 video/label_count_2x_n6"
out=${REPRODUCTION_OUT:-docs/REPRODUCTION.md}
# Written beside it and moved into place only when every part succeeded, so a failure leaves the
# last good page, not a cut-short one.
trap 'rm -f "$out.tmp"' EXIT
{
  cat docs/reproduction/head.md
  echo
  echo "| study | paper | checks | hold | reversed | inconclusive |"
  echo "| :-- | :-- | --: | --: | --: | --: |"
  for d in $studies; do
    for f in docs/$d/*.claims.md; do
      [ -e "$f" ] || continue
      section=$(sed -n 's/^### \(.*\)/\1/p' "$f" | head -1)
      sed -n 's/^\([0-9]*\) checks: \([0-9]*\) hold, \([0-9]*\) reversed, \([0-9]*\) inconclusive.*/\1 \2 \3 \4/p' "$f" |
        while read -r n h r i; do echo "| $d (\`$(basename "$f" .claims.md)\`) | $section | $n | $h | $r | $i |"; done
    done
  done
  echo
  cat docs/reproduction/not-run.md
  echo
  dirs=""
  for d in $studies; do
    ls docs/$d/*.claims.csv > /dev/null 2>&1 && dirs="$dirs docs/$d"
  done
  python3 "$(dirname "$0")/reproduction-table.py" $dirs
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
