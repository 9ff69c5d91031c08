/* The course book's own script (docs/book/conf.py loads it on every page).

   Search snippets are cut from a page's text, where a formula is still TeX between \( and \): each snippet
   drops a formula the cut left in half, then is typeset by the site's MathJax, before the search terms are
   highlighted (a highlight inside a formula would split it). */
(() => {
  const PAIRS = [["\\(", "\\)"], ["\\[", "\\]"]];

  function tidy(text) {
    for (const [open, close] of PAIRS) {
      const firstClose = text.indexOf(close), firstOpen = text.indexOf(open);
      if (firstClose >= 0 && (firstOpen < 0 || firstClose < firstOpen)) text = "..." + text.slice(firstClose + 2);
      const lastOpen = text.lastIndexOf(open), lastClose = text.lastIndexOf(close);
      if (lastOpen >= 0 && lastOpen > lastClose) text = text.slice(0, lastOpen) + "...";
    }
    return text;
  }

  function typeset(node) {
    if (!window.MathJax || !MathJax.typeset) return false;
    try {
      MathJax.typeset([node]);
      return true;
    } catch (e) {
      return false;
    }
  }

  if (typeof Search === "undefined" || !Search.makeSearchSummary) return;
  const makeSummary = Search.makeSearchSummary;
  Search.makeSearchSummary = (...args) => {
    const summary = makeSummary(...args);
    if (!summary) return summary;
    summary.textContent = tidy(summary.textContent);
    summary.classList.add("mathjax_process");
    if (!typeset(summary)) {  // MathJax still loading: typeset once it is ready
      const later = () => window.MathJax && MathJax.startup && MathJax.startup.promise
        .then(() => MathJax.typesetPromise([summary]));
      if (!later()) window.addEventListener("load", later);
    }
    return summary;
  };
})();
