#!/bin/sh
# build.sh OUT.so : the CUDA op library compiled for the host emulation in this folder,
# with the same C API as libhybridchat_cuda.so. Run the op tests on it with
#   HYBRIDCHAT_CUDA_LIB=OUT.so node --test dist/test/native-ops.test.js dist/test/native-backward.test.js
# (the addon then sees one "device"; HYBRIDCHAT_EMU_DEVICES=N makes it N; its GEMMs go
# through the stand-in cuBLASLt built beside OUT.so, see the end). The .cu sources are copied with each
# `kernel<<<g, b, s, st>>>(` rewritten to `::emu::launch(g, b, s, st, kernel, `.
# Beside OUT.so it writes the stand-in NCCL (nccl.cc) as libnccl.so.2, where the addon's
# NCCL loader looks first (native/src/dist/comm_nccl.cc), so tensor parallelism over N
# emulated devices runs its collectives through the same dlopen code as on GPUs.
set -e
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../src/cuda"
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in "$src"/*.cu "$src"/*.cuh "$src"/*.h; do
  perl -pe 's/([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<(.*?)>>>\(/::emu::launch($2, $1, /g' "$f" > "$work/$(basename "$f")"
done
for f in "$work"/*.cu; do echo "#include \"$f\""; done > "$work/all.cc"
g++ -std=c++20 -O1 -g -fPIC -shared -pthread -I"$here" -I"$work" -o "$out" "$work/all.cc"
g++ -std=c++17 -O2 -fPIC -shared -pthread -fvisibility=hidden -o "$(dirname "$out")/libnccl.so.2" "$here/nccl.cc"
# The stand-in cuBLASLt (cublaslt_emu.cc), beside OUT.so under the soname the library
# searches there first: the emulated device's GEMMs then go through cublasLtMatmul's ABI.
g++ -std=c++20 -O2 -fPIC -shared -I"$here" -o "$(dirname "$out")/libcublasLt.so.12" "$here/cublaslt_emu.cc"
