#!/bin/sh
# Test a trained model on the evaluation episodes (configs/test.yaml) with torchrun.
#   sh test.sh {pascal|coco} {split} {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh test.sh {pascal|coco} {split} {shot} HMNet {resnet50|vgg} [hydra overrides...]
#   sh test.sh fss1000 {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh test.sh lvis {split: 0-9} {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh test.sh {deepglobe|isic|lung} {shot} FSSAM {small|base|large} checkpoint=FILE [hydra overrides...]
# Datasets and their folds are those of fssam/data/benchmarks (a one-fold benchmark takes
# no split). FSS-1000 adds experiment=fss1000_fssam: HSNet's 2400 test episodes, seed 0;
# LVIS-92i adds experiment=lvis_fssam: Matcher's 2300 test episodes, seed 0;
# the cross-domain targets add experiment=crossdomain_test: PATNet's 600 episodes, seed 0
# (their model is trained elsewhere: checkpoint=FILE).
# Two rows: the releases' own test episodes (seed 321, their loader's worker count) and ours
# over 5 seeds (mean +- std); 1000 episodes each (HMNet on COCO: 4000; input 473 / 633 with
# experiment=<dataset>_hmnet). 'protocols=[release]' keeps the first row only.
# GPUs: NGPUS (default 1). Example: NGPUS=4 sh test.sh coco 2 5 FSSAM large 'protocols=[release]'
set -eu

usage() {
    echo "usage: sh test.sh {pascal|coco} {split: 0-3} {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       sh test.sh {pascal|coco} {split: 0-3} {shot: >= 1} HMNet {resnet50|vgg} [hydra overrides...]" >&2
    echo "       sh test.sh fss1000 {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       sh test.sh lvis {split: 0-9} {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       sh test.sh {deepglobe|isic|lung} {shot: >= 1} FSSAM {small|base|large} checkpoint=FILE [hydra overrides...]" >&2
    echo "       GPUs from NGPUS (default 1)" >&2
    exit 2
}

fail() {
    echo "test.sh: $1" >&2
    usage
}

[ $# -ge 1 ] || fail "expected at least 4 arguments, got $#"
dataset=$1
case $dataset in  # the benchmarks of fssam/data/benchmarks and their folds
    pascal | coco) folds=4 ;;
    lvis) folds=10 ;;
    fss1000 | deepglobe | isic | lung) folds=1 ;;
    *) fail "unknown dataset '$dataset' (pascal, coco, fss1000, lvis, deepglobe, isic or lung)" ;;
esac
if [ "$folds" -eq 1 ]; then
    [ $# -ge 4 ] || fail "expected at least 4 arguments for $dataset (no split), got $#"
    split=0 shot=$2 model=$3 size=$4
    shift 4
else
    [ $# -ge 5 ] || fail "expected at least 5 arguments, got $#"
    split=$2 shot=$3 model=$4 size=$5
    shift 5
    case $split in
        [0-9]) [ "$split" -lt "$folds" ] || fail "split must be 0..$((folds - 1)) for $dataset, got '$split'" ;;
        *) fail "split must be 0..$((folds - 1)) for $dataset, got '$split'" ;;
    esac
fi
case $shot in '' | *[!0-9]* | 0*) fail "shot must be a positive integer, got '$shot'" ;; esac
case $model in
    FSSAM)
        case $size in
            small) choice="sam2=small" ;;
            base) choice="sam2=base_plus" ;;
            large) choice="sam2=large" ;;
            *) fail "SAM 2 size must be small, base or large, got '$size'" ;;
        esac
        case $dataset in
            fss1000) choice="$choice experiment=fss1000_fssam" ;;
            lvis) choice="$choice experiment=lvis_fssam" ;;
            deepglobe | isic | lung) choice="$choice experiment=crossdomain_test" ;;
        esac ;;
    HMNet)
        case $dataset in pascal | coco) ;; *) fail "HMNet runs on pascal and coco only (no base learner for $dataset)" ;; esac
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
