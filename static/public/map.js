// The public map: country outlines from world-atlas (Natural Earth), shipped under static/vendor/,
// and the incidents of the page's filters from the GeoJSON download, clustered. No tile server and
// no request to another host. Sensitive places arrive already at their public coordinates.
(function () {
  "use strict";
  var element = document.getElementById("map");
  if (!element || !window.L) {
    return;
  }
  var map = L.map(element, { worldCopyJump: true, minZoom: 1, maxZoom: 12 }).setView([35, 115], 3);
  map.attributionControl.setPrefix(false).addAttribution("Natural Earth");

  function json(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        throw new Error(url + " answered " + response.status);
      }
      return response.json();
    });
  }

  json(element.dataset.outlines).then(function (topology) {
    L.geoJSON(topojson.feature(topology, topology.objects.countries), {
      interactive: false,
      style: { color: "#6e7781", weight: 1, fillColor: "#f4f1ea", fillOpacity: 1 },
    })
      .addTo(map)
      .bringToBack();
  });

  json(element.dataset.features).then(function (collection) {
    var clusters = L.markerClusterGroup({ showCoverageOnHover: false });
    collection.features.forEach(function (feature) {
      if (!feature.geometry) {
        return;
      }
      var positions =
        feature.geometry.type === "Point" ? [feature.geometry.coordinates] : feature.geometry.coordinates;
      positions.forEach(function (position) {
        var marker = L.circleMarker([position[1], position[0]], {
          radius: 7,
          color: "#0b4f8a",
          fillColor: "#0b4f8a",
          fillOpacity: 0.8,
        });
        // Built as nodes, never as HTML: titles are analysts' free text.
        var popup = document.createElement("div");
        var link = document.createElement("a");
        link.href = feature.properties.url;
        link.textContent = feature.properties.title;
        popup.appendChild(link);
        popup.appendChild(document.createElement("br"));
        popup.appendChild(document.createTextNode(feature.properties.date_label || ""));
        marker.bindPopup(popup);
        clusters.addLayer(marker);
      });
    });
    map.addLayer(clusters);
    element.dataset.points = String(clusters.getLayers().length);
    if (clusters.getLayers().length) {
      map.fitBounds(clusters.getBounds(), { maxZoom: 6, padding: [24, 24] });
    }
  });
})();
