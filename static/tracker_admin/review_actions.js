// The review buttons below an incident's Save act on the incident as last saved: what was typed on
// the page and not saved was left behind without a word. Once the page's form has changed, a
// review button asks first.
(function () {
  "use strict";
  var reviewForm = document.querySelector("form.review-actions");
  var editForm = document.getElementById("incident_form");
  if (!reviewForm || !editForm) {
    return;
  }
  var edited = false;
  function markEdited() {
    edited = true;
  }
  editForm.addEventListener("input", markEdited);
  editForm.addEventListener("change", markEdited);
  reviewForm.addEventListener("submit", function (event) {
    var leave = "Your edits on this page are not saved. Review the incident as last saved, and leave them?";
    if (edited && !window.confirm(leave)) {
      event.preventDefault();
    }
  });
})();
