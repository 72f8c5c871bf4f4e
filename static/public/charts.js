// The statistics' charts, drawn with Chart.js (static/vendor/chart.js, from npm) from the numbers
// the page embeds with Django's json_script (#chart-data): the same rows as the table (a timeline also
// with the years or months between them that no incident falls in, at none), which stays
// the accessible form of them. Incidents as bars; people as the best estimate (a line through
// time, a dark bar per group) over a light bar from the lowest to the highest figure. Each tooltip
// also says how many of the incidents give no figure (which the people leave out). Nothing is loaded from elsewhere,
// and Chart.js sets its canvas's size through the DOM, which a Content-Security-Policy allows.
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  var figure = document.getElementById("charts");
  if (!source || !figure || !window.Chart) {
    return;
  }
  var data = JSON.parse(source.textContent);
  if (!data.labels.length) {
    return;
  }
  var locale = document.documentElement.lang || undefined;
  var numbers = new Intl.NumberFormat(locale);
  var timeline = data.timeline;
  var ink = "#0b4f8a";
  var band = "rgba(11, 79, 138, 0.25)";

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#1b1f24";
  // Drawn at once: no motion, and a chart that is complete as soon as the page is.
  Chart.defaults.animation = false;

  function value(context) {
    var raw = context.raw;
    if (Array.isArray(raw)) {
      return numbers.format(raw[0]) + "–" + numbers.format(raw[1]);
    }
    return raw === null ? "" : numbers.format(raw);
  }

  // "No figure: 20", under a period's or group's incidents or people: those incidents add
  // no one to the people, which would otherwise read as complete.
  function withoutFigure(text, index) {
    return data.incidents[index] ? text + ": " + numbers.format(data.without_figure[index]) : "";
  }

  function options(callbacks) {
    var indexAxis = timeline ? "x" : "y";
    var valueAxis = timeline ? "y" : "x";
    var scales = {};
    // Whole numbers only: there is no half an incident or person.
    scales[valueAxis] = {
      beginAtZero: true,
      ticks: { precision: 0, callback: function (tick) { return numbers.format(tick); } },
    };
    return {
      indexAxis: indexAxis,
      maintainAspectRatio: false,
      locale: locale,
      scales: scales,
      plugins: {
        tooltip: {
          callbacks: Object.assign(
            {
              label: function (context) {
                return context.dataset.label + ": " + value(context);
              },
            },
            callbacks
          ),
        },
      },
    };
  }

  function draw(id, config) {
    var canvas = document.getElementById(id);
    // A row a group when they are listed down the page, so long lists stay legible.
    if (!timeline) {
      canvas.parentNode.style.height = Math.max(12, 4 + 1.6 * data.labels.length) + "rem";
    }
    new Chart(canvas, config);
    canvas.dataset.drawn = String(data.labels.length);
  }

  figure.hidden = false;

  draw("chart-incidents", {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [{ label: data.text.incidents, data: data.incidents, backgroundColor: ink }],
    },
    options: options({
      afterLabel: function (context) { return withoutFigure(data.text.without_figure, context.dataIndex); },
    }),
  });

  var ranges = data.low.map(function (low, index) {
    return low === null || data.high[index] === null ? null : [low, data.high[index]];
  });
  // The range as a light bar from the lowest to the highest figure, in every period or group (a
  // band between points would vanish where a period stands alone); the best estimate over it, as
  // a line through time or a dark bar per group.
  var range = {
    type: "bar",
    label: data.text.range,
    data: ranges,
    backgroundColor: band,
    borderColor: ink,
    borderWidth: 1,
    grouped: false,
    order: 2,
  };
  var best = timeline
    ? { type: "line", label: data.text.people, data: data.people, borderColor: ink, backgroundColor: ink, order: 1,
        // The incidents over more than one year or month follow the periods: their point stands
        // alone, not joined to the last period's as if they had happened after it.
        segment: { borderColor: function (context) { return context.p1DataIndex >= data.periods ? "transparent" : undefined; } } }
    : { type: "bar", label: data.text.people, data: data.people, backgroundColor: ink, grouped: false, barPercentage: 0.45, order: 1 };
  var people = {
    type: "bar",
    data: { labels: data.labels, datasets: [best, range] },
    options: options({
      afterBody: function (items) { return items.length ? withoutFigure(data.text.not_in_sums, items[0].dataIndex) : ""; },
    }),
  };
  draw("chart-people", people);
})();
