// The web page (server/web/: static HTML, CSS and an ES module; no build step) at `/`.
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync } from "fastify";

// from dist/server/http/routes/ and from server/http/routes/ alike: the sources' web/ folder
const WEB_ROOT = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../../../server/web/" : "../../web/", import.meta.url));

export const webRoutes: FastifyPluginAsync = async (app) => {
  // the page and its files hold no data: open to all, the page then asks for a key
  app.addHook("onRoute", (route) => {
    route.config = { ...route.config, access: "public" };
  });
  await app.register(fastifyStatic, { root: WEB_ROOT, prefix: "/web/", index: false });
  app.get("/", async (_request, reply) => reply.sendFile("index.html", WEB_ROOT));
};
