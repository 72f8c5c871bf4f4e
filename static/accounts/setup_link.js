// A setup link carries its key after the "#", which the browser never sends: no access log holds
// a link that still works. This posts the key, and takes it off the address and the history first.
(function () {
  "use strict";
  var key = window.location.hash.slice(1);
  var form = document.getElementById("setup-link-form");
  if (!key || !form) {
    return;
  }
  window.history.replaceState(null, "", window.location.pathname);
  form.elements.key.value = key;
  form.submit();
})();
