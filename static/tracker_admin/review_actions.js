// The review buttons below an incident's Save act on the incident as last saved: what was typed on
// the page and not saved was left behind without a word. Once the page's form holds other values
// than it opened with, a review button asks first. Its values are compared, not its events: the
// autocompletes (select2), Django's "+" pop-ups and its calendar's "Today" change a field without
// the native input or change event a listener hears, and a correction made through them was
// published away unasked.
(function () {
  "use strict";
  var reviewForm = document.querySelector("form.review-actions");
  var editForm = document.getElementById("incident_form");
  if (!reviewForm || !editForm) {
    return;
  }
  function values() {
    return new URLSearchParams(new FormData(editForm)).toString();
  }
  var opened = values();
  reviewForm.addEventListener("submit", function (event) {
    var leave = "Your edits on this page are not saved. Review the incident as last saved, and leave them?";
    if (values() !== opened && !window.confirm(leave)) {
      event.preventDefault();
    }
  });
})();
