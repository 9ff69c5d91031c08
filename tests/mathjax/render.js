// Renders TeX formulas with MathJax 3 as JupyterLab 4 configures it (every TeX package, textmacros
// included) and reports each one that fails. Input on stdin: a JSON list of {id, tex, display}.
// Output on stdout: a JSON list of {id, error} for the formulas that did not render.
// Unlike a browser, nothing is rendered in red: a TeX error or an undefined macro is an error here.
const { mathjax } = require("mathjax-full/js/mathjax.js");
const { TeX } = require("mathjax-full/js/input/tex.js");
const { SVG } = require("mathjax-full/js/output/svg.js");
const { liteAdaptor } = require("mathjax-full/js/adaptors/liteAdaptor.js");
const { RegisterHTMLHandler } = require("mathjax-full/js/handlers/html.js");
const { AllPackages } = require("mathjax-full/js/input/tex/AllPackages.js");

const adaptor = liteAdaptor();
RegisterHTMLHandler(adaptor);
const packages = AllPackages.filter((p) => p !== "noerrors" && p !== "noundefined");
const tex = new TeX({
  packages,
  formatError: (jax, err) => { throw err; },
});
const doc = mathjax.document("", { InputJax: tex, OutputJax: new SVG({ fontCache: "none" }) });

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const failures = [];
  for (const { id, tex: source, display } of JSON.parse(input)) {
    try {
      doc.convert(source, { display });
    } catch (err) {
      failures.push({ id, error: String(err.message || err) });
    }
  }
  process.stdout.write(JSON.stringify(failures));
});
