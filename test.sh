#!/bin/sh
# Test a trained FSSAM on 1000 episodes per seed (configs/test.yaml) with torchrun.
#   sh test.sh {pascal|coco} {split} {shot} FSSAM {small|base|large} [hydra overrides...]
# GPUs: NGPUS (default 1). Example: NGPUS=4 sh test.sh coco 2 5 FSSAM large 'seeds=[321]'
set -eu

usage() {
    echo "usage: sh test.sh {pascal|coco} {split: 0-3} {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       GPUs from NGPUS (default 1)" >&2
    exit 2
}

fail() {
    echo "test.sh: $1" >&2
    usage
}

[ $# -ge 5 ] || fail "expected at least 5 arguments, got $#"
dataset=$1 split=$2 shot=$3 model=$4 size=$5
shift 5

case $dataset in pascal | coco) ;; *) fail "unknown dataset '$dataset' (pascal or coco)" ;; esac
case $split in 0 | 1 | 2 | 3) ;; *) fail "split must be 0, 1, 2 or 3, got '$split'" ;; esac
case $shot in '' | *[!0-9]* | 0*) fail "shot must be a positive integer, got '$shot'" ;; esac
[ "$model" = FSSAM ] || fail "model must be FSSAM, got '$model'"
case $size in
    small) sam2=small ;;
    base) sam2=base_plus ;;
    large) sam2=large ;;
    *) fail "SAM 2 size must be small, base or large, got '$size'" ;;
esac
ngpus=${NGPUS:-1}
case $ngpus in '' | *[!0-9]* | 0*) fail "NGPUS must be a positive integer, got '$ngpus'" ;; esac

exec torchrun --standalone --nproc_per_node="$ngpus" "$(dirname "$0")/test.py" \
    dataset="$dataset" split="$split" shot="$shot" sam2="$sam2" "$@"
