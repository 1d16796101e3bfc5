// Bundles the widgets' front end into one ES module + one stylesheet per widget, written to
// widgets/faultlens/ui/static/ (shipped as package data; committed, so installs need no node).
//   node build.mjs           rebuild the bundles
//   node build.mjs --check   exit 1 when a committed bundle differs from what its sources build to
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "faultlens", "ui", "static");
const header = "generated from widgets/js/src by `npm run build` (esbuild); edit the sources, not this file";

const options = {
  absWorkingDir: here,
  entryPoints: [
    { in: "src/explorer/index.js", out: "explorer" },
    { in: "src/explorer/explorer.css", out: "explorer" },
    { in: "src/features/index.js", out: "features" },
    { in: "src/features/features.css", out: "features" },
  ],
  bundle: true,
  format: "esm",
  target: "es2020",
  charset: "utf8",
  minify: false,
  legalComments: "none",
  banner: { js: `// ${header}`, css: `/* ${header} */` },
  outdir,
  logLevel: "warning",
};

// data strings reach the page through textContent and attributes only: no HTML parsing in the sources
const unsafe = /\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write)\b/;
const sources = readdirSync(join(here, "src"), { recursive: true }).filter((f) => f.endsWith(".js"));
const code = (f) => readFileSync(join(here, "src", f), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
const parsing = sources.filter((f) => unsafe.test(code(f)));
for (const f of parsing) console.error(`src/${f}: parses HTML (innerHTML or the like); build nodes with el() and textContent`);
if (parsing.length) process.exit(1);

const check = process.argv.includes("--check");
const result = await esbuild.build({ ...options, write: !check });
if (check) {
  const stale = result.outputFiles.filter((f) => {
    let committed = "";
    try { committed = readFileSync(f.path, "utf8"); } catch { /* missing: stale */ }
    return committed !== f.text;
  });
  for (const f of stale) console.error(`stale bundle: ${relative(process.cwd(), f.path)} differs from its sources (run npm run build in widgets/js)`);
  process.exit(stale.length ? 1 : 0);
}
