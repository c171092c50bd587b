#!/usr/bin/env bash
# Builds llama.cpp's CPU benchmark tools from the source that the node-llama-cpp npm package ships
# (llama/gitRelease.bundle), so bench/vs-llama-cpp.ts compares against a pinned, reproducible
# llama.cpp without making it a dependency. Everything lands in a cache dir outside the repo;
# a finished build is reused. Prints the directory holding the binaries on its last line.
#
#   bench/llama-cpp/build.sh                  # node-llama-cpp@3.22 (override: NODE_LLAMA_CPP_VERSION)
#   JOBS=4 bench/llama-cpp/build.sh
#   WITH_SERVER=1 bench/llama-cpp/build.sh    # also llama-server (a few more minutes: its web UI is compiled in)
set -euo pipefail

version="${NODE_LLAMA_CPP_VERSION:-3.22}"
jobs="${JOBS:-2}"
cache="${HYBRIDCHAT_LLAMA_CPP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hybridchat}"
tools=(llama-bench llama-batched-bench)
[[ "${WITH_SERVER:-0}" == 1 ]] && tools+=(llama-server)
step() { printf '[llama.cpp build %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

mkdir -p "$cache/pack"
pack_dir="$cache/pack/node-llama-cpp-$version"
if [[ ! -f "$pack_dir/llama/gitRelease.bundle" ]]; then
  step "npm pack node-llama-cpp@$version into $cache/pack"
  tgz="$(cd "$cache/pack" && npm pack --silent "node-llama-cpp@$version" | tail -n 1)"
  rm -rf "$pack_dir.tmp" && mkdir -p "$pack_dir.tmp"
  tar -xzf "$cache/pack/$tgz" -C "$pack_dir.tmp" --strip-components=1 \
    package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
  rm -f "$cache/pack/$tgz"
  rm -rf "$pack_dir" && mv "$pack_dir.tmp" "$pack_dir"
fi

bundle="$pack_dir/llama/gitRelease.bundle"
tag="$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).tag)' \
  "$pack_dir/llama/llama.cpp.info.json")"
commit="$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" { print substr($1, 1, 7) }')"
src="$cache/llama.cpp-$tag-$commit"
build="$src/build"

if [[ ! -d "$src/.git" ]]; then
  step "cloning llama.cpp $tag ($commit) from the bundle into $src"
  rm -rf "$src.tmp"
  git -c advice.detachedHead=false clone --quiet "$bundle" "$src.tmp"
  mv "$src.tmp" "$src"
fi

missing=0
for t in "${tools[@]}"; do [[ -x "$build/bin/$t" ]] || missing=1; done
if [[ $missing == 1 ]]; then
  step "configuring (Release, GGML_NATIVE=ON, static, no curl)"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
    -DLLAMA_BUILD_SERVER=ON >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
  for t in "${tools[@]}"; do
    step "building $t with -j$jobs (log: $build.$t.log)"
    # cmake's own progress lines ("[ 42%] Building ...") go to the log; show every 20th.
    cmake --build "$build" --target "$t" -j "$jobs" 2>&1 | tee "$build.$t.log" \
      | awk '/^\[ *[0-9]+%\]/ && (NR % 20 == 1) { print "  " $0; fflush() }'
    [[ -x "$build/bin/$t" ]] || { step "$t failed; see $build.$t.log"; exit 1; }
  done
else
  step "reusing $build"
fi
printf '%s\n' "$tag $commit" >"$build/bin/VERSION"
step "done: $(ls "$build/bin" | tr '\n' ' ')"
echo "$build/bin"
