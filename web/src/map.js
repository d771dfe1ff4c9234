// The city map: MapLibre draws only a dark background and the district outlines (no tile or
// glyph server exists here); deck.gl draws names, H3 cells, incidents and alarms on top.
import { MapboxOverlay } from '@deck.gl/mapbox';
import { addDistricts, blankMap } from './basemap.js';
import { ScatterplotLayer, TextLayer } from '@deck.gl/layers';
import { H3HexagonLayer } from '@deck.gl/geo-layers';
import { boundsOf, districtLabelPoints, h3ResolutionForZoom, hexagonColor } from './derive.js';
import { PRIORITY_LABEL, SEVERITY_LABEL, label, priorityColor, severityColor } from './labels.js';

// Browser fonts, not a glyph server: TextLayer rasterises them itself.
const FONT = '"PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Micro Hei", sans-serif';

export class CityMap {
  /**
   * @param {HTMLElement} container
   * @param {{onSelect: (incidentId: string) => void, onViewChange: () => void,
   *          tooltip: (info: object) => string | null}} hooks
   */
  constructor(container, { onSelect, onViewChange, tooltip }) {
    this.onSelect = onSelect;
    this.labels = [];
    this.map = blankMap(container);
    this.overlay = new MapboxOverlay({ interleaved: false, layers: [], getTooltip: tooltip });
    this.map.addControl(this.overlay);
    this.resolution = h3ResolutionForZoom(this.map.getZoom());
    this.map.on('zoom', () => {
      const resolution = h3ResolutionForZoom(this.map.getZoom());
      if (resolution !== this.resolution) {
        this.resolution = resolution;
        onViewChange();
      }
    });
    this.loaded = this.map.once('load');
    this.scale = pageScale();
    window.addEventListener('resize', () => {
      this.scale = pageScale();
      onViewChange();
    });
  }

  /** Adds the district outlines and fits the view to them. */
  async setDistricts(collection) {
    await this.loaded;
    addDistricts(this.map, collection);
    this.labels = districtLabelPoints(collection);
    this.map.fitBounds(boundsOf(collection), { padding: 24, animate: false });
  }

  /** Where each district's name is written: alarms without coordinates gather there. */
  get districtPoints() {
    return new Map(this.labels.map((d) => [d.code, d.position]));
  }

  flyTo(lon, lat) {
    if (!Number.isFinite(lon) || !Number.isFinite(lat)) return;
    this.map.flyTo({ center: [lon, lat], zoom: Math.max(this.map.getZoom(), 13), speed: 1.4 });
  }

  /** Redraws deck.gl's layers; data arrays that did not change are passed again as the same
   *  objects, so deck.gl does not recompute their geometry. */
  draw({ hexagons, incidents, alarms, selected }) {
    this.overlay.setProps({
      layers: [
        new H3HexagonLayer({
          id: 'h3',
          data: hexagons,
          getHexagon: (cell) => cell.cell,
          getFillColor: hexagonColor,
          getLineColor: [15, 23, 42, 160],
          lineWidthMinPixels: 1,
          extruded: false,
          pickable: true,
        }),
        new ScatterplotLayer({
          id: 'incidents',
          data: incidents,
          getPosition: (i) => [i.lon, i.lat],
          getFillColor: (i) => priorityColor(i.priority),
          getLineColor: [11, 18, 32],
          radiusUnits: 'pixels',
          getRadius: 4 * this.scale,
          stroked: true,
          lineWidthMinPixels: 1,
          pickable: true,
          onClick: ({ object }) => object && this.onSelect(object.incident_id),
        }),
        new ScatterplotLayer({
          id: 'selected',
          data: selected ? [selected] : [],
          getPosition: (i) => [i.lon, i.lat],
          radiusUnits: 'pixels',
          getRadius: 11 * this.scale,
          filled: false,
          stroked: true,
          getLineColor: [255, 255, 255],
          lineWidthMinPixels: 2,
        }),
        new ScatterplotLayer({
          id: 'alarms',
          data: alarms,
          getPosition: (a) => a.position,
          getFillColor: (a) => [...severityColor(a.severity), 190],
          getLineColor: [255, 255, 255, 200],
          radiusUnits: 'pixels',
          getRadius: (a) => (7 + 3 * Math.sqrt(a.count)) * this.scale, // area grows with the count
          updateTriggers: { getRadius: this.scale },
          stroked: true,
          lineWidthMinPixels: 1,
          pickable: true,
        }),
        new TextLayer({
          id: 'district-names',
          data: this.labels,
          getPosition: (d) => d.position,
          getText: (d) => d.name,
          characterSet: 'auto', // collect the Chinese characters actually used
          fontFamily: FONT,
          fontSettings: { sdf: true },
          getSize: 16 * this.scale,
          getColor: [203, 213, 225, 230],
          outlineWidth: 3,
          outlineColor: [11, 18, 32, 255],
          getPixelOffset: [0, -18 * this.scale], // above the alarm marker that may sit on the same point
        }),
      ],
    });
  }
}

/** How much larger than a laptop's the page's type is (the CSS root size grows with the
 *  viewport), so the map's text and markers grow with the panels on a wall. */
function pageScale() {
  return parseFloat(getComputedStyle(document.documentElement).fontSize) / 14 || 1;
}

/** Tooltip text for whatever deck.gl picked under the pointer. */
export function tooltipText({ object, layer }, names) {
  if (!object) return null;
  switch (layer.id) {
    case 'h3': {
      const categories = Object.entries(object.by_category)
        .map(([code, n]) => `${names.categories.get(code) ?? code} ${n}`).join('\n');
      const priorities = Object.entries(object.by_priority)
        .map(([p, n]) => `${label(PRIORITY_LABEL, p)} ${n}`).join(' · ');
      return `在办事件 ${object.open}\n${priorities}\n${categories}`;
    }
    case 'incidents':
      return `${names.categories.get(object.category) ?? object.category ?? ''} · `
        + `${label(PRIORITY_LABEL, object.priority)} · 上报 ${object.reports} 次`;
    case 'alarms':
      return `${names.districts.get(object.district) ?? object.district ?? ''} 告警 ${object.count}`
        + `（最高：${label(SEVERITY_LABEL, object.severity)}）`;
    default:
      return null;
  }
}
