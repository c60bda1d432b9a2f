// The console's whole build: copy our sources and the vendored browser files from
// node_modules into the directory the API serves. No bundler: the sources are plain ES modules.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "api", "static", "console");
const vendor = [
  ["socket.io-client/dist/socket.io.esm.min.js", "socket.io.esm.min.js"],
  ["redoc/bundles/redoc.standalone.js", "redoc.standalone.js"],
];

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "vendor"), { recursive: true });
cpSync(join(here, "src"), out, { recursive: true });
for (const [from, to] of vendor) {
  cpSync(join(here, "node_modules", from), join(out, "vendor", to));
}
console.log(`console built into ${out}`);
