// The workbench's small map: where one ticket is. MapLibre alone (a background, the district
// outlines and one marker) — deck.gl's layers are the dashboard's, and leaving them out keeps
// this page's bundle to MapLibre and a few kilobytes of its own.
import { Marker } from 'maplibre-gl';
import { addDistricts, blankMap } from './basemap.js';
import { boundsOf } from './derive.js';

const NONE = '\u0000'; // a district code no feature has: highlights nothing
const TICKET_ZOOM = 12; // a few streets around it, and usually a district border

export class TicketMap {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.map = blankMap(container);
    this.marker = new Marker({ color: '#f97316' });
    this.bounds = null;
    this.loaded = this.map.once('load');
  }

  /** Draws the district outlines (once); the ticket's district is drawn brighter. */
  async setDistricts(collection) {
    await this.loaded;
    if (!collection.features.length) return;
    addDistricts(this.map, collection, { lineOpacity: 0.6, lineWidth: 1 });
    this.map.addLayer({
      id: 'district-selected', type: 'line', source: 'districts',
      filter: ['==', ['get', 'code'], NONE],
      paint: { 'line-color': '#e2e8f0', 'line-width': 2 },
    });
    this.bounds = boundsOf(collection);
    if (this.shown) this.show(this.shown);
  }

  /** Centres on a ticket; without coordinates, shows its district or the whole city. */
  show({ lon, lat, district_code: district }) {
    this.shown = { lon, lat, district_code: district };
    // The container may just have become visible: MapLibre measures it again.
    this.map.resize();
    if (this.map.getLayer('district-selected')) {
      this.map.setFilter('district-selected', ['==', ['get', 'code'], district ?? NONE]);
    }
    if (Number.isFinite(lon) && Number.isFinite(lat)) {
      this.marker.setLngLat([lon, lat]).addTo(this.map);
      this.map.jumpTo({ center: [lon, lat], zoom: TICKET_ZOOM });
    } else {
      this.marker.remove();
      if (this.bounds) this.map.fitBounds(this.bounds, { padding: 16, animate: false });
    }
  }
}
