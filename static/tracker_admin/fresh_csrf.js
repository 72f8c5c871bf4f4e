// Django gives a browser a new CSRF token when someone signs in. A form opened before (the session
// ran out, its analyst signed in again in another tab) still holds the old one, and sending it was
// refused with a 403 that lost everything typed. Each form sends the browser's current token: the
// cookie Django set, which only this site's pages can read (CSRF_COOKIE_NAME, Django's default).
(function () {
  "use strict";
  var COOKIE_NAME = "csrftoken";

  function currentToken() {
    var prefix = COOKIE_NAME + "=";
    var cookies = document.cookie ? document.cookie.split("; ") : [];
    for (var index = 0; index < cookies.length; index += 1) {
      if (cookies[index].indexOf(prefix) === 0) {
        return decodeURIComponent(cookies[index].slice(prefix.length));
      }
    }
    return null;
  }

  document.addEventListener(
    "submit",
    function (event) {
      var field = event.target.querySelector("input[name=csrfmiddlewaretoken]");
      var token = currentToken();
      if (field && token) {
        field.value = token;
      }
    },
    true
  );
})();
