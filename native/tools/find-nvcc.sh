#!/bin/sh
# Prints the nvcc that builds libhybridchat_cuda.so, or nothing (a CPU-only build):
# nvcc on PATH, else $CUDA_HOME/bin/nvcc. HYBRIDCHAT_NO_CUDA=1 forces a CPU-only build.
# binding.gyp and test/cuda-build.test.ts both ask this script, so they agree.
[ "$HYBRIDCHAT_NO_CUDA" = "1" ] && exit 0
if command -v nvcc >/dev/null 2>&1; then
  command -v nvcc
elif [ -n "$CUDA_HOME" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "$CUDA_HOME/bin/nvcc"
fi
exit 0
