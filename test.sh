#!/bin/sh
# Test a trained model on the evaluation episodes (configs/test.yaml) with torchrun.
#   sh test.sh {pascal|coco} {split} {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh test.sh {pascal|coco} {split} {shot} HMNet {resnet50|vgg} [hydra overrides...]
# Two rows: the releases' own test episodes (seed 321, their loader's worker count) and ours
# over 5 seeds (mean +- std); 1000 episodes each (HMNet on COCO: 4000; input 473 / 633 with
# experiment=<dataset>_hmnet). 'protocols=[release]' keeps the first row only.
# GPUs: NGPUS (default 1). Example: NGPUS=4 sh test.sh coco 2 5 FSSAM large 'protocols=[release]'
set -eu

usage() {
    echo "usage: sh test.sh {pascal|coco} {split: 0-3} {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       sh test.sh {pascal|coco} {split: 0-3} {shot: >= 1} HMNet {resnet50|vgg} [hydra overrides...]" >&2
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
case $model in
    FSSAM)
        case $size in
            small) choice="sam2=small" ;;
            base) choice="sam2=base_plus" ;;
            large) choice="sam2=large" ;;
            *) fail "SAM 2 size must be small, base or large, got '$size'" ;;
        esac ;;
    HMNet)
        case $size in
            resnet50 | vgg) choice="experiment=${dataset}_hmnet model.backbone=$size" ;;
            *) fail "HMNet backbone must be resnet50 or vgg, got '$size'" ;;
        esac ;;
    *) fail "model must be FSSAM or HMNet, got '$model'" ;;
esac
ngpus=${NGPUS:-1}
case $ngpus in '' | *[!0-9]* | 0*) fail "NGPUS must be a positive integer, got '$ngpus'" ;; esac

exec torchrun --standalone --nproc_per_node="$ngpus" "$(dirname "$0")/test.py" \
    dataset="$dataset" split="$split" shot="$shot" $choice "$@"
