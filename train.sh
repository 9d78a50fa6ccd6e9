#!/bin/sh
# Train with torchrun on the paper's recipe (fssam/configs/train.yaml + experiment/<dataset>_<method>).
#   sh train.sh {GPUs} {port} {pascal|coco} {split} {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh train.sh {GPUs} {port} {pascal|coco} {split} {shot|base} HMNet {resnet50|vgg} [hydra overrides...]
#   sh train.sh {GPUs} {port} fss1000 {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh train.sh {GPUs} {port} lvis {split: 0-9} {shot} FSSAM {small|base|large} [hydra overrides...]
#   sh train.sh {GPUs} {port} pascal 4 {shot} FSSAM {small|base|large}   cross-domain: every
#      PASCAL class, validation on FSS-1000 (experiment=pascal_crossdomain)
# Datasets and their folds are those of fssam/data/benchmarks (a one-fold benchmark takes
# no split).
# GPUs: processes on this node; port: the rendezvous port. Both 1-shot and K-shot work.
# HMNet trains in two stages: first its base learner with shot "base" (experiment
# <dataset>_base, run folder exp/<dataset>/PSPNet/split<i>/<backbone>), then the K-shot model.
# Examples: sh train.sh 4 29500 pascal 0 1 FSSAM small trainer.num_workers=4
#           sh train.sh 4 29500 pascal 0 base HMNet resnet50
#           sh train.sh 4 29500 pascal 0 1 HMNet resnet50
# Multi-node: on every node set NNODES (default 1), NODE_RANK (0..NNODES-1, default 0) and
# MASTER_ADDR (address of node 0, default 127.0.0.1), with the same port, e.g. node 1 of 2:
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 sh train.sh 4 29500 coco 0 1 FSSAM small
# The run folder (exp/...) must be on a filesystem shared by the nodes for resuming.
# Faults (README "Faults"): a rank that dies makes torchrun restart the group, which resumes
# from last.pt by itself, up to MAX_RESTARTS times (default 3). SIGTERM or SIGUSR1 to
# this script (or to torchrun) stops every rank after the same step with last.pt of that
# step, within STOP_TIMEOUT seconds (default 300; then torchrun kills the workers); the
# script then exits 75: start it again to resume. Exit 0: training ended; other: an error.
set -eu

usage() {
    echo "usage: sh train.sh {GPUs} {port} {pascal|coco} {split: 0-3} {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       sh train.sh {GPUs} {port} {pascal|coco} {split: 0-3} {shot: >= 1 | base} HMNet {resnet50|vgg} [hydra overrides...]" >&2
    echo "       sh train.sh {GPUs} {port} fss1000 {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       sh train.sh {GPUs} {port} lvis {split: 0-9} {shot: >= 1} FSSAM {small|base|large} [hydra overrides...]" >&2
    echo "       multi-node: NNODES, NODE_RANK, MASTER_ADDR (see the header of train.sh)" >&2
    echo "       faults: MAX_RESTARTS (default 3), STOP_TIMEOUT (seconds, default 300)" >&2
    exit 2
}

fail() {
    echo "train.sh: $1" >&2
    usage
}

positive() {  # positive() NAME VALUE
    case $2 in '' | *[!0-9]* | 0*) fail "$1 must be a positive integer, got '$2'" ;; esac
}

count() {  # count() NAME VALUE: an integer >= 0
    case $2 in '' | *[!0-9]* | 0?*) fail "$1 must be an integer >= 0, got '$2'" ;; esac
}

[ $# -ge 3 ] || fail "expected at least 6 arguments, got $#"
gpus=$1 port=$2 dataset=$3
case $dataset in  # the benchmarks of fssam/data/benchmarks and their folds
    pascal | coco) folds=4 ;;
    lvis) folds=10 ;;
    fss1000) folds=1 ;;
    deepglobe | isic | lung) fail "$dataset is a test-only benchmark: train on pascal, test with test.sh" ;;
    *) fail "unknown dataset '$dataset' (pascal, coco, fss1000 or lvis)" ;;
esac
if [ "$folds" -eq 1 ]; then
    [ $# -ge 6 ] || fail "expected at least 6 arguments for $dataset (no split), got $#"
    split=0 shot=$4 model=$5 size=$6
    shift 6
else
    [ $# -ge 7 ] || fail "expected at least 7 arguments, got $#"
    split=$4 shot=$5 model=$6 size=$7
    shift 7
    case $dataset:$split in
        *:0 | *:1 | *:2 | *:3) ;;
        lvis:[4-9]) ;;
        pascal:4) ;;  # every PASCAL class: PATNet's cross-domain training (FSSAM only)
        lvis:*) fail "split must be 0..9 for lvis, got '$split'" ;;
        *) fail "split must be 0, 1, 2 or 3 (4 for cross-domain training on pascal), got '$split'" ;;
    esac
fi
experiment="${dataset}_fssam"
[ "$split" = 4 ] && experiment=pascal_crossdomain

positive GPUs "$gpus"
positive port "$port"
[ "$port" -le 65535 ] || fail "port must be at most 65535, got '$port'"
case $model in
    FSSAM)
        positive shot "$shot"
        case $size in
            small) sam2=small ;;
            base) sam2=base_plus ;;
            large) sam2=large ;;
            *) fail "SAM 2 size must be small, base or large, got '$size'" ;;
        esac
        set -- shot="$shot" sam2="$sam2" experiment="$experiment" "$@" ;;
    HMNet)
        case $dataset in pascal | coco) ;; *) fail "HMNet runs on pascal and coco only (no base learner for $dataset)" ;; esac
        [ "$split" != 4 ] || fail "split 4 (every PASCAL class) is for FSSAM only"
        case $size in resnet50 | vgg) ;; *) fail "backbone must be resnet50 or vgg, got '$size'" ;; esac
        if [ "$shot" = base ]; then  # stage 1: the PSPNet base learner (no shots)
            set -- model=pspnet model.backbone="$size" experiment="${dataset}_base" "$@"
        else
            positive shot "$shot"
            set -- shot="$shot" model=hmnet model.backbone="$size" experiment="${dataset}_hmnet" "$@"
        fi ;;
    *) fail "model must be FSSAM or HMNet, got '$model'" ;;
esac
nnodes=${NNODES:-1} node_rank=${NODE_RANK:-0} master_addr=${MASTER_ADDR:-127.0.0.1}
positive NNODES "$nnodes"
case $node_rank in '' | *[!0-9]*) fail "NODE_RANK must be an integer >= 0, got '$node_rank'" ;; esac
[ "$node_rank" -lt "$nnodes" ] || fail "NODE_RANK must be below NNODES=$nnodes, got '$node_rank'"

max_restarts=${MAX_RESTARTS:-3} stop_timeout=${STOP_TIMEOUT:-300}
count MAX_RESTARTS "$max_restarts"
positive STOP_TIMEOUT "$stop_timeout"

# torchrun runs in the background so that this script can pass stop signals on (each kind
# once: a cluster may signal every process itself) and report how the run ended: torchrun
# exits 1 after any signal it forwarded, the run writes $FSSAM_STOP_FILE once its
# checkpoint is safe.
stop_file=$(mktemp "${TMPDIR:-/tmp}/fssam_stop.XXXXXX")
trap 'rm -f "$stop_file"' EXIT
FSSAM_STOP_FILE=$stop_file torchrun --nnodes="$nnodes" --node_rank="$node_rank" \
    --master_addr="$master_addr" --master_port="$port" --nproc_per_node="$gpus" \
    --max-restarts="$max_restarts" --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
    --shutdown-timeout="$stop_timeout" "$(dirname "$0")/train.py" \
    dataset="$dataset" split="$split" "$@" &
pid=$! forwarded=""
forward() {  # forward SIGNAL
    case "$forwarded" in *" $1"*) return ;; esac
    forwarded="$forwarded $1"
    kill -s "$1" "$pid" 2>/dev/null || :
}
for sig in TERM USR1 INT HUP; do trap "forward $sig" "$sig"; done
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do  # a trapped signal ended the wait, not torchrun
    status=0
    wait "$pid" || status=$?
done
if [ -s "$stop_file" ]; then
    echo "train.sh: $(cat "$stop_file"): start the same command again to resume" >&2
    exit 75
fi
exit "$status"
