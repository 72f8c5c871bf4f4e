// The public maps: country outlines from world-atlas (Natural Earth), shipped under static/vendor/,
// and points from one of two places: the incidents of the page's filters from the GeoJSON download
// (`data-features`, the map page), or the places listed on the page itself (`data-places`, a CSS
// selector of elements carrying data-latitude/data-longitude: the incident page). No tile server
// and no request to another host. Sensitive places arrive already at their public coordinates.
(function () {
  "use strict";
  var element = document.getElementById("map");
  if (!element || !window.L) {
    return;
  }
  var map = L.map(element, { worldCopyJump: true, minZoom: 1, maxZoom: 12, zoomControl: false }).setView([35, 115], 3);
  map.attributionControl.setPrefix(false).addAttribution("Natural Earth");
  // The controls named in the page's language (`data-zoom-in`, … from the template): Leaflet's own
  // English names were what a screen reader announced on the Korean pages.
  L.control.zoom({ zoomInTitle: element.dataset.zoomIn, zoomOutTitle: element.dataset.zoomOut }).addTo(map);
  map.on("popupopen", function (event) {
    // Leaflet 1.9 writes "Close popup" with no option to name it otherwise.
    var close = event.popup.getElement().querySelector(".leaflet-popup-close-button");
    if (close) {
      close.setAttribute("aria-label", element.dataset.closePopup);
    }
  });

  function json(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        throw new Error(url + " answered " + response.status);
      }
      return response.json();
    });
  }

  // Built as nodes, never as HTML: titles and names are analysts' free text.
  function popup(title, url, detail) {
    var box = document.createElement("div");
    var name = document.createElement(url ? "a" : "strong");
    if (url) {
      name.href = url;
    }
    name.textContent = title;
    box.appendChild(name);
    if (detail) {
      box.appendChild(document.createElement("br"));
      box.appendChild(document.createTextNode(detail));
    }
    return box;
  }

  function marker(latitude, longitude, content) {
    return L.circleMarker([latitude, longitude], {
      radius: 7,
      color: "#0b4f8a",
      fillColor: "#0b4f8a",
      fillOpacity: 0.8,
    }).bindPopup(content);
  }

  function show(layer) {
    map.addLayer(layer);
    element.dataset.points = String(layer.getLayers().length);
    if (layer.getLayers().length) {
      map.fitBounds(layer.getBounds(), { maxZoom: 6, padding: [24, 24], animate: false });
    }
  }

  json(element.dataset.outlines).then(function (topology) {
    L.geoJSON(topojson.feature(topology, topology.objects.countries), {
      interactive: false,
      style: { color: "#6e7781", weight: 1, fillColor: "#f4f1ea", fillOpacity: 1 },
    })
      .addTo(map)
      .bringToBack();
  });

  if (element.dataset.places) {
    var places = L.featureGroup();
    document.querySelectorAll(element.dataset.places).forEach(function (place) {
      places.addLayer(
        marker(Number(place.dataset.latitude), Number(place.dataset.longitude), popup(place.dataset.name))
      );
    });
    show(places);
    return;
  }

  // A cluster is a button (Enter zooms into it, or spreads it out); markercluster names it by its
  // number alone, which a screen reader said as "4, button". Named here for what it holds, in the
  // page's language (`data-cluster`), on the same icon markercluster draws.
  var ClusterIcon = L.DivIcon.extend({
    createIcon: function (old) {
      var icon = L.DivIcon.prototype.createIcon.call(this, old);
      icon.setAttribute("aria-label", this.options.name);
      return icon;
    },
  });

  function clusterIcon(cluster) {
    var count = cluster.getChildCount();
    var size = count < 10 ? "small" : count < 100 ? "medium" : "large";
    return new ClusterIcon({
      html: "<div><span>" + count + "</span></div>",
      className: "marker-cluster marker-cluster-" + size,
      iconSize: L.point(40, 40),
      name: element.dataset.cluster.replace("{count}", count),
    });
  }

  json(element.dataset.features).then(function (collection) {
    var clusters = L.markerClusterGroup({ showCoverageOnHover: false, iconCreateFunction: clusterIcon });
    collection.features.forEach(function (feature) {
      if (!feature.geometry) {
        return;
      }
      var positions =
        feature.geometry.type === "Point" ? [feature.geometry.coordinates] : feature.geometry.coordinates;
      positions.forEach(function (position) {
        var content = popup(feature.properties.title, feature.properties.url, feature.properties.dates);
        clusters.addLayer(marker(position[1], position[0], content));
      });
    });
    show(clusters);
  });
})();
