# CPU image: builds the native addon, then runs the server as a non-root user.
#   docker build -t hybridchat .
#   docker run -d -p 8000:8000 -v hc-data:/data -v "$PWD/models:/models:ro" \
#     -e HYBRIDCHAT_API_KEYS="$ADMIN_KEY:admin,$USER_KEY:user" \
#     hybridchat serve --host 0.0.0.0 --data-dir /data --model /models/stories260K
# Keys are required: the server listens beyond loopback inside the container and refuses to
# do that with every route (files, jobs, promote) open. Without --model it serves the pretrained
# default if HYBRIDCHAT_DEFAULT_MODEL names one, else a built-in UNTRAINED tiny model. Arguments
# after the image name replace CMD: repeat --host and
# --data-dir. A bind mount for /data must be writable by uid 1000 (the image's "node" user).
#
# CUDA variant (for a host with an NVIDIA GPU; not built in CI, which has none): build the
# `build` stage on an image that has nvcc and Node 20 (e.g. nvidia/cuda:12.6.3-devel-ubuntu22.04
# with Node 20 installed) — binding.gyp then also builds native/build/Release/libhybridchat_cuda.so
# (sm_80, sm_90; the CUDA runtime linked statically) — and add to the runtime stage
#   COPY --from=build /app/native/build/Release/libhybridchat_cuda.so ./native/build/Release/
# The addon loads it from beside hybridchat.node; the runtime stage needs only the NVIDIA
# driver, which `docker run --gpus all` (NVIDIA Container Toolkit) mounts in.
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY native ./native
COPY engine ./engine
COPY server ./server
COPY clients ./clients
COPY bench ./bench
COPY test ./test
COPY index.ts ./
# npm ci runs the install script (node-gyp: the addon) and prepare (tsc: dist/)
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
# Each decode step hands JS a fresh logits array (batch × vocab floats, 2 MB at batch 16):
# glibc's defaults give those pages back and fault them in again every step. Keeping up to
# 128 MB of freed heap removes the faults (bench/RESULTS.md, "Q4_K prefill ... fresh pages").
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/build/Release/hybridchat.node ./native/build/Release/hybridchat.node
# the web page is served from the sources' server/web (no build step)
COPY --from=build /app/server/web ./server/web
RUN mkdir -p /data /models && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8000
# /health needs no key; it says 503 until the model is loaded (start-period covers a big one)
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD node -e "fetch('http://127.0.0.1:8000/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
