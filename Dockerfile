# CPU image: builds the native addon, then runs the server as a non-root user.
# docker build -t hybridchat . && docker run -p 8000:8000 -v hc-data:/data hybridchat
#
# CUDA variant (not built in CI, which has no GPU): use a build stage with nvcc and Node 20
# (e.g. nvidia/cuda:12.x-devel plus Node 20) — binding.gyp then also builds
# native/build/Release/libhybridchat_cuda.so; copy it next to hybridchat.node in the runtime
# stage (an nvidia/cuda:12.x-runtime base), and run with `--gpus all`. The addon loads the
# library at run time and `cudaStatus()` says whether a device was found.
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
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
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
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD node -e "fetch('http://127.0.0.1:8000/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
# Mount a Hugging Face model directory at /models/NAME and add: --model /models/NAME
ENTRYPOINT ["node", "dist/server/cli.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
