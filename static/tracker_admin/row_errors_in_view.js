// A refused save tells each error in its field's own column. In a table of rows (the victim groups,
// the organizations involved) on a phone, that column may lie beyond the part of the table the
// screen shows: the page said "Please correct the error below" and none was in sight. Each such
// table opens slid to its first error. Once the page has loaded: the autocompletes (select2) are
// drawn by then, and they set the columns' widths.
(function () {
  "use strict";
  window.addEventListener("load", function () {
    document.querySelectorAll(".inline-group .tabular .wrapper").forEach(function (table) {
      var error = table.querySelector("td .errorlist");
      if (!error) {
        return;
      }
      var shown = table.getBoundingClientRect();
      var cell = error.closest("td").getBoundingClientRect();
      if (cell.right > shown.right) {
        table.scrollLeft += Math.min(cell.right - shown.right, cell.left - shown.left);
      }
    });
  });
})();
