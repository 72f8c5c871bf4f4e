// An admin form is sent only while this browser is still signed in as the person who opened it.
// Sent after the session had ended (a working day's sign-in over, a password changed elsewhere,
// signed out in another tab), the admin redirected the save to its sign-in page and everything
// typed on the form was lost. Each POST form first asks the site whom the session opens the admin
// for (accounts:signed-in); when it is no one, or someone else, or the site cannot be reached, the
// form stays as it is and says why, and the same button sends it once the analyst has signed in
// again in another tab (fresh_csrf.js then sends the new sign-in's token).
(function () {
  "use strict";
  var script = document.currentScript;
  var checkUrl = script.dataset.checkUrl;
  var openedBy = script.dataset.username;
  var CHECKED = "sentWhileSignedIn";

  function asked(form) {
    // Signing out needs no sign-in; a form sent without requestSubmit cannot be sent again as the
    // analyst sent it (the button pressed names the action: Save, Save and continue…).
    return form.method === "post" && form.id !== "logout-form" && typeof form.requestSubmit === "function";
  }

  function showNotice(reason, username) {
    var previous = document.getElementById("sent-while-signed-in");
    if (previous) {
      previous.remove();
    }
    var notices = document.getElementById("sent-while-signed-in-notices");
    var notice = notices.content.querySelector("[data-reason=" + reason + "]").cloneNode(true);
    var named = notice.querySelector("[data-username]");
    if (named) {
      named.textContent = username;
    }
    var list = document.createElement("ul");
    list.className = "messagelist";
    list.id = "sent-while-signed-in";
    list.appendChild(notice);
    var content = document.getElementById("content");
    content.parentNode.insertBefore(list, content);
    notice.focus();
  }

  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (!asked(form)) {
        return;
      }
      if (form.dataset[CHECKED]) {
        delete form.dataset[CHECKED];
        return;
      }
      // Held whole until the site answers: the form's own listeners (a review button's question
      // whether to leave the edits typed) hear only the submission that is sent, and once.
      event.preventDefault();
      event.stopPropagation();
      var submitter = event.submitter;

      function send() {
        form.dataset[CHECKED] = "yes";
        form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      }

      fetch(checkUrl, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } }).then(
        function (response) {
          if (!response.ok) {
            // The check itself failed (the site busy, say): it must not keep anyone from saving.
            send();
            return;
          }
          return response.json().then(function (session) {
            if (!session.signed_in) {
              showNotice("signed-out");
            } else if (session.username !== openedBy) {
              showNotice("someone-else", session.username);
            } else {
              send();
            }
          });
        },
        function () {
          showNotice("unreachable");
        }
      );
    },
    true
  );
})();
