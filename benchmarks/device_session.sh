#!/usr/bin/env bash
# One call on the GPU machine (see benchmarks/README.md for the .whl wheels), results under $OUT:
#   bash benchmarks/device_session.sh check     # VibeVoice-1.5B by phase under 4/6/3.75 GiB, then the memory matrix
#   bash benchmarks/device_session.sh final     # every cuda test, VibeVoice under 6 GiB by phase, the matrix again
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
nvidia-smi --query-gpu=name,pcie.link.gen.current,pcie.link.width.current,pcie.link.gen.max,pcie.link.width.max,driver_version,memory.total --format=csv > $OUT/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $OUT/gpu.txt
nproc >> $OUT/gpu.txt
timeout 90 python3 -m tests.tiny_models --full-size /tmp/full csm-1b vibevoice-1.5b >> $OUT/gpu.txt 2>&1
case "$1" in
check)
  timeout 200 python3 benchmarks/vibevoice_memory.py --checkpoint /tmp/full/vibevoice-1.5b --limits 4 6 3.75 \
    --tag h200-fixed --snapshots $OUT/snapshots --budget-s 170 --out $OUT > $OUT/vibevoice_memory.log 2>&1
  echo "vibevoice_memory rc=$?" >> $OUT/vibevoice_memory.log
  timeout 270 python3 benchmarks/memory_matrix.py --models /tmp/full/vibevoice-1.5b /tmp/full/csm-1b --caps 4 6 8 \
    --texts sentence 3-paragraphs --tag h200-fixed --budget-s 240 --out $OUT > $OUT/matrix.log 2>&1
  echo "matrix rc=$?" >> $OUT/matrix.log
  ;;
final)
  timeout 180 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_executors.py tests/test_fastpath.py \
    tests/test_fastpath_offload.py tests/test_fastpath_vibevoice.py tests/test_live_degradation.py \
    tests/test_streamed_cleanup.py tests/test_worker.py > $OUT/cuda_tests.log 2>&1
  echo "cuda tests rc=$?" >> $OUT/cuda_tests.log
  timeout 80 python3 benchmarks/vibevoice_memory.py --checkpoint /tmp/full/vibevoice-1.5b --limits 6 \
    --tag h200-expandable --snapshots $OUT/snapshots --budget-s 60 --out $OUT > $OUT/vibevoice_memory.log 2>&1
  echo "vibevoice_memory rc=$?" >> $OUT/vibevoice_memory.log
  timeout 290 python3 benchmarks/memory_matrix.py --models /tmp/full/vibevoice-1.5b /tmp/full/csm-1b --caps 6 4 8 \
    --texts sentence 3-paragraphs --tag h200-expandable --budget-s 250 --out $OUT > $OUT/matrix.log 2>&1
  echo "matrix rc=$?" >> $OUT/matrix.log
  ;;
esac
