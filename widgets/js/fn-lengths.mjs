// The longest functions of some JS files, in lines (a brace matcher over `function` and arrow bodies
// that skips strings and comments; good enough for these sources, not a parser).
//   node fn-lengths.mjs [N] FILE...     (default N = 10; e.g. src/*/*.js)
import { readFileSync } from "node:fs";
import { basename } from "node:path";

const HEAD = /function\s*([\w$]*)\s*\([^)]*\)\s*\{|(?:const|let)\s+([\w$]+)\s*=\s*(?:async\s*)?\([^)]*\)\s*=>\s*\{|([\w$]+)\s*\([^)]*\)\s*\{(?=\s)|=>\s*\{/g;
const KEYWORDS = new Set(["if", "for", "while", "switch", "catch"]);

function closing(src, i) {
  let depth = 0;
  for (let j = i; j < src.length; j++) {
    const c = src[j];
    if (c === '"' || c === "'" || c === "`") {
      for (j++; j < src.length && src[j] !== c; j++) if (src[j] === "\\") j++;
    } else if (src.startsWith("//", j)) j = src.indexOf("\n", j);
    else if (src.startsWith("/*", j)) j = src.indexOf("*/", j) + 1;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return j;
  }
  return src.length;
}

const lines = (s, a, b) => s.slice(a, b).split("\n").length;
const args = process.argv.slice(2);
const n = /^\d+$/.test(args[0]) ? Number(args.shift()) : 10;
const found = [];
for (const file of args) {
  const src = readFileSync(file, "utf8");
  for (const m of src.matchAll(HEAD)) {
    const name = m[1] || m[2] || m[3] || "(arrow)";
    if (KEYWORDS.has(name)) continue;
    const open = m.index + m[0].length - 1;
    found.push({ lines: lines(src, open, closing(src, open)), file: basename(file), name, line: lines(src, 0, open) });
  }
}
found.sort((a, b) => b.lines - a.lines);
for (const f of found.slice(0, n)) console.log(`${String(f.lines).padStart(4)}  ${f.file}:${f.line}  ${f.name}`);
