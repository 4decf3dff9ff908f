#!/usr/bin/env bash
# One call on the GPU machine (see benchmarks/README.md for the .whl wheels): cuda tests, the memory matrix
# through the app, and the Pocket CPU tier on two pinned cores, results under $OUT. Run: bash benchmarks/device_session.sh
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
nvidia-smi --query-gpu=name,pcie.link.gen.current,pcie.link.width.current,pcie.link.gen.max,pcie.link.width.max,driver_version,memory.total --format=csv > $OUT/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $OUT/gpu.txt
nproc >> $OUT/gpu.txt
(taskset -c 4-15 python3 -m tests.tiny_models --full-size /tmp/full csm-1b vibevoice-1.5b >> $OUT/gpu.txt 2>&1) &
BUILD=$!
taskset -c 4-15 timeout 200 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_streamed_cleanup.py tests/test_worker.py tests/test_executors.py tests/test_live_degradation.py > $OUT/cuda_tests.log 2>&1
echo "cuda tests rc=$?" >> $OUT/cuda_tests.log
wait $BUILD
(taskset -c 0,1 timeout 400 python3 benchmarks/cpu_tier.py --threads 2 --repeats 3 --tag h200host-2cores --out $OUT > $OUT/cpu_tier.log 2>&1; echo "cpu tier rc=$?" >> $OUT/cpu_tier.log) &
taskset -c 4-15 timeout 330 python3 benchmarks/memory_matrix.py --models /tmp/full/vibevoice-1.5b /tmp/full/csm-1b --caps 4 6 8 --texts sentence 3-paragraphs --tag h200 --budget-s 250 --out $OUT > $OUT/matrix.log 2>&1
echo "matrix rc=$?" >> $OUT/matrix.log
wait
