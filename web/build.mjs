// Bundle regl-scatterplot (and regl, pub-sub-es, ...) into one minified ES module for the map page,
// copy Swagger UI's dist files for /docs, and the licence of every package beside them. Run: npm ci && npm run build
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const out = "../src/embedlake/web/static/vendor";
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: ["entry.js"],
  bundle: true,
  format: "esm",
  minify: true,
  target: ["es2020"],
  outfile: join(out, "regl-scatterplot.js"),
  metafile: true,
  legalComments: "none",
});

// every package that ended up in the bundle, with its version and licence text
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
// regl-scatterplot's own dist inlines its dependencies (dom-2d-camera, gl-matrix, ...): add the
// dependencies of every bundled package, recursively, so each licence is kept
const pending = [...packages];
while (pending.length) {
  const name = pending.pop();
  const deps = JSON.parse(readFileSync(join("node_modules", name, "package.json"), "utf8")).dependencies || {};
  for (const dep of Object.keys(deps)) {
    if (!packages.has(dep) && existsSync(join("node_modules", dep, "package.json"))) {
      packages.add(dep);
      pending.push(dep);
    }
  }
}
let notice = "Third-party code bundled in regl-scatterplot.js (built by web/build.mjs):\n\n";
for (const name of [...packages].sort()) {
  const dir = join("node_modules", name);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const licence = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  notice += `== ${name} ${pkg.version} (${pkg.license}) ==\n`;
  notice += licence ? readFileSync(join(dir, licence), "utf8").trim() : `License: ${pkg.license} (no licence file in the package)`;
  notice += "\n\n";
}

// Swagger UI for /docs: its published bundle and stylesheet, copied byte for byte (no CDN at run time)
const swagger = join("node_modules", "swagger-ui-dist");
const swaggerPkg = JSON.parse(readFileSync(join(swagger, "package.json"), "utf8"));
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) copyFileSync(join(swagger, file), join(out, file));
notice += "Third-party code in swagger-ui-bundle.js and swagger-ui.css (copied from swagger-ui-dist by web/build.mjs):\n\n";
notice += `== swagger-ui-dist ${swaggerPkg.version} (${swaggerPkg.license}) ==\n`;
for (const file of ["LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"]) {
  notice += readFileSync(join(swagger, file), "utf8").trim() + "\n\n";
}
writeFileSync(join(out, "LICENSES.txt"), notice);
console.log(`bundled ${packages.size} packages: ${[...packages].sort().join(", ")}; copied swagger-ui-dist ${swaggerPkg.version}`);
