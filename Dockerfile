# CPU image: builds the native addon, then runs the server as a non-root user.
# docker build -t hybridchat . && docker run -p 8000:8000 -v hc-data:/data hybridchat
#
# CUDA variant: build on an image that has nvcc, e.g.
#   docker build --build-arg BUILD_IMAGE=nvidia/cuda:12.6.2-devel-ubuntu24.04 ... (with Node 20
#   installed in it), and copy native/build/Release/libhybridchat_cuda.so next to the addon;
# binding.gyp builds that library whenever nvcc is on PATH, and the addon loads it at run
# time (run with --gpus all; `cudaStatus()` says whether a device was found).
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
