#!/usr/bin/env bash
# One call on the lent GPU machine (the `device` tool), once ../shared/gpu/pack.sh's environment is
# unpacked in /root/site: the GPU tests, then docs/performance.md's headline benches under NVIDIA MPS on a
# polars-written corpus (one file, one row group): random-weight BERT-base + tagger + ner, bf16, 8 and 14
# pipelines; the shipped default pipeline, as annotate plans it. Logs and results go to $OUT.
#   DOCS=path/to/docs.jsonl bash bench/gpu_check.sh     (../shared does not travel: carry EWT's docs.jsonl)
set -uo pipefail
export PYTHONPATH=/root/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${OUT:-/tmp/out}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.txt"
nproc | tee -a "$out/machine.txt"
python3 -c "import torch, spacy, thinc, ray, transformers; print('torch', torch.__version__, 'spacy', spacy.__version__, 'thinc', thinc.__version__, 'ray', ray.__version__, 'transformers', transformers.__version__)" | tee -a "$out/machine.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$out/machine.txt"
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/operators/test_gpu.py > "$out/gpu-tests.log" 2>&1
echo "gpu tests: rc $?"; tail -5 "$out/gpu-tests.log"
nvidia-cuda-mps-control -d && echo "MPS started"
timeout 330 python3 -c "from jobs.cli import app; app()" bench --shape bert-base --no-parser --device gpu \
    --words 2000000 --baseline-words 300000 --batch-sizes 256 --precision bf16 --gpus-per-actor 0.125,0.0667 \
    --layout polars --docs "${DOCS:-../shared/data/ewt/docs.jsonl}" --out "$out/bench" > "$out/bench.log" 2>&1
echo "bench: rc $?"
timeout 240 python3 -c "from jobs.cli import app; app()" bench --model corpus_nlp_minilm --device gpu \
    --words 2000000 --baseline-words 300000 --batch-sizes 256 --precision bf16 \
    --layout polars --docs "${DOCS:-../shared/data/ewt/docs.jsonl}" --out "$out/default" > "$out/default.log" 2>&1
echo "default pipeline bench: rc $?"
echo quit | nvidia-cuda-mps-control
tail -28 "$out/bench.log"; tail -16 "$out/default.log"
