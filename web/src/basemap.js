// What both pages' maps start from: MapLibre with only a dark background (no tile or glyph
// server; the district outlines are added from the pack's GeoJSON), centred on Wenzhou.
import { Map as MapLibre, NavigationControl, setWorkerUrl } from 'maplibre-gl';

// MapLibre's worker is a separate file (build.mjs copies it into dist); a bundle cannot find
// it through import.meta.url, so it is named outright.
setWorkerUrl('/static/maplibre-gl-worker.mjs');

export const BACKGROUND = '#0b1220';

/** @param {HTMLElement} container */
export function blankMap(container) {
  const map = new MapLibre({
    container,
    style: {
      version: 8,
      sources: {},
      layers: [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } }],
    },
    center: [120.7, 28.0],
    zoom: 8,
    attributionControl: false, // nothing external is drawn, so nothing to attribute
    dragRotate: false, // a tilted map helps no one; keeps the controls simple
  });
  map.addControl(new NavigationControl({ showCompass: false }), 'top-left');
  return map;
}

/** The pack's district outlines as a fill and a line layer ('districts' source). */
export function addDistricts(map, collection, { lineOpacity = 0.75, lineWidth = 1.2 } = {}) {
  map.addSource('districts', { type: 'geojson', data: collection });
  map.addLayer({
    id: 'district-fill', type: 'fill', source: 'districts',
    paint: { 'fill-color': '#14213a', 'fill-opacity': 0.85 },
  });
  map.addLayer({
    id: 'district-line', type: 'line', source: 'districts',
    paint: { 'line-color': '#3b82f6', 'line-opacity': lineOpacity, 'line-width': lineWidth },
  });
}
