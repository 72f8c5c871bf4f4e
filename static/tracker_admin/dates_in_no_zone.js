// An incident's, a claim's, a source's and a response's dates are days, in no time zone. Django's
// date picker shifts "Today" and the calendar's today to the server's zone (UTC) and warns under
// every date to "enter times in the UTC timezone": an analyst in Seoul at 08:00 on 8 December who
// clicked "Today" saved 7 December, every morning until 09:00 (a partner in New York, after 19:00,
// the next day). Without the server's offset, the picker keeps the browser's own day. A page with a
// time field (a user's last login) keeps it: its times are read in UTC, and the warning says so.
// Deferred: runs once the page is read, before Django's DateTimeShortcuts reads the offset on load.
(function () {
  "use strict";
  if (!document.querySelector("input.vTimeField")) {
    delete document.body.dataset.adminUtcOffset;
  }
})();
