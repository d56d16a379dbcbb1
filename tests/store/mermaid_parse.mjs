// Parse Mermaid files with the real mermaid parser (mermaid 11 + jsdom under Node).
// usage: MERMAID_DIR=/dir/with/node_modules node mermaid_parse.mjs FILE...
// Prints "OK <file> <type>" or "FAIL <file> <message>" per file; exits 1 if any failed.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(path.join(process.env.MERMAID_DIR || process.cwd(), "index.js"));
const { JSDOM } = require("jsdom");
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const entry = require.resolve("mermaid").replace(/mermaid(\.min)?\.js$/, "mermaid.core.mjs");
const { default: mermaid } = await import(pathToFileURL(entry).href);
mermaid.initialize({ startOnLoad: false });
let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    const result = await mermaid.parse(fs.readFileSync(file, "utf8"));
    console.log("OK", file, result.diagramType);
  } catch (error) {
    failed++;
    console.log("FAIL", file, String(error.message || error).split("\n").slice(0, 3).join(" | "));
  }
}
process.exit(failed ? 1 : 0);
