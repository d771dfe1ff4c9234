// The operations-centre dashboard: wires the key, the feed, the map and the panels, and
// renders at most MIN_FRAME_MS apart however fast the feed sends.
import 'maplibre-gl/dist/maplibre-gl.css';
import './style.css';
import { fetchCategoryNames, fetchDepartmentNames, fetchDistricts, orEmpty } from './api.js';
import {
  alarmPoints, alarmsBySeverity, deviceRows, hexagonsAt, incidentsNewestFirst,
  placedIncidents, slaRows,
} from './derive.js';
import { FeedClient } from './feed.js';
import { askForKey, forgetKey, keyFromPage } from './key.js';
import { CityMap, tooltipText } from './map.js';
import {
  IncidentList, renderAlarms, renderCounts, renderDetails, renderDevices, renderLegend,
  renderSla, renderStatus,
} from './panels.js';
import { LAYERS, Store } from './store.js';

const MIN_FRAME_MS = 250; // ~4 renders a second is plenty for people, and cheap for a wall PC

const $ = (id) => document.getElementById(id);
const store = new Store();
const names = { departments: new Map(), categories: new Map(), districts: new Map() };
const ui = {
  status: { state: 'connecting' },
  selectedId: null,
  namesChanged: true, // names and selection are not in the store's versions
  selectionChanged: true,
  seen: {}, // the store's layer versions at the last render
  derived: {}, // what was derived from them (reused while a layer does not change)
};
let cityMap;
let feed;

// ---- render scheduling -------------------------------------------------------------------

let dirty = false;
let scheduled = false;
let lastRender = 0;

/** Marks the page out of date; one render follows, no sooner than MIN_FRAME_MS after the
 *  previous one and in an animation frame (so none at all while the tab is hidden). */
function invalidate() {
  dirty = true;
  if (scheduled) return;
  scheduled = true;
  const wait = Math.max(0, lastRender + MIN_FRAME_MS - performance.now());
  setTimeout(() => requestAnimationFrame(() => {
    scheduled = false;
    if (!dirty) return;
    dirty = false;
    lastRender = performance.now();
    render();
  }), wait);
}

// ---- render ------------------------------------------------------------------------------

/** Whether a layer changed since the last render (and notes that it has now been seen). */
function changed(layer) {
  const now = store.versions[layer];
  if (ui.seen[layer] === now) return false;
  ui.seen[layer] = now;
  return true;
}

function render() {
  const d = ui.derived;
  const fresh = Object.fromEntries(LAYERS.map((layer) => [layer, changed(layer)]));
  const namesChanged = ui.namesChanged;
  const selectionChanged = ui.selectionChanged;
  ui.namesChanged = ui.selectionChanged = false;

  if (fresh.incidents) {
    d.incidents = incidentsNewestFirst(store.get('incidents').values());
    d.placed = placedIncidents(d.incidents);
  }
  if (fresh.incidents || namesChanged || selectionChanged) {
    if (namesChanged) incidentList.invalidate();
    incidentList.render(d.incidents, names, ui.selectedId);
  }
  const selected = ui.selectedId ? store.get('incidents').get(ui.selectedId) : null;
  if (fresh.incidents || fresh.tickets || fresh.events || namesChanged || selectionChanged) {
    renderDetails($('incident-details'), selected, { tickets: store.get('tickets'),
      events: store.get('events') }, names, () => select(null));
  }
  if (fresh.sla || namesChanged) renderSla($('sla-board'), slaRows(store.get('sla').values(), names.departments));
  if (fresh['device-health'] || namesChanged) {
    renderDevices($('device-health'), deviceRows(store.get('device-health').values(), names.districts));
  }
  if (fresh.alarms || namesChanged) {
    renderAlarms($('alarm-list'), $('alarm-count'), alarmsBySeverity(store.get('alarms').values()), names);
  }

  // The map: the same arrays are passed again while their layer did not change.
  if (fresh.h3 || d.resolution !== cityMap.resolution) {
    d.resolution = cityMap.resolution;
    d.hexagons = hexagonsAt(store.get('h3').values(), d.resolution);
  }
  if (fresh.alarms || namesChanged) d.alarmPoints = alarmPoints(store.get('alarms').values(), cityMap.districtPoints);
  cityMap.draw({ hexagons: d.hexagons, incidents: d.placed, alarms: d.alarmPoints, selected });

  const counts = store.counts();
  renderCounts($('counts'), counts);
  renderStatus($('status'), ui.status, store);
  // For browser tests: what the page holds and how many cells the map draws.
  window.opsState = { counts, hexagons: d.hexagons.length, resolution: d.resolution,
    seq: store.seq, state: ui.status.state };
}

function select(incidentId) {
  ui.selectedId = incidentId;
  ui.selectionChanged = true;
  const incident = incidentId && store.get('incidents').get(incidentId);
  if (incident) cityMap.flyTo(incident.lon, incident.lat);
  invalidate();
}

// ---- start -------------------------------------------------------------------------------

const incidentList = new IncidentList($('incident-list'), $('incident-count'));

async function connect(key) {
  feed?.stop();
  // Department names need the key; they are only labels, so the feed does not wait.
  orEmpty(fetchDepartmentNames(key)).then((departments) => {
    names.departments = departments;
    ui.namesChanged = true;
    invalidate();
  });
  feed = new FeedClient({
    key,
    layers: LAYERS,
    store,
    onChange: invalidate,
    onStatus: (status) => {
      ui.status = status;
      invalidate();
    },
    onAuthFailure: async (reason) => {
      forgetKey();
      connect(await askForKey(`密钥被拒绝：${reason}`));
    },
  });
  feed.start();
}

async function main() {
  renderLegend($('legend'));
  cityMap = new CityMap($('map'), {
    onSelect: select,
    onViewChange: invalidate,
    tooltip: (info) => tooltipText(info, names),
  });
  $('incident-list').addEventListener('click', (event) => {
    const row = event.target.closest('[data-incident-id]');
    if (row) select(row.dataset.incidentId);
  });

  const [districts, categories] = await Promise.all([
    fetchDistricts().catch((error) => {
      console.error('districts unavailable:', error);
      return { type: 'FeatureCollection', features: [] };
    }),
    orEmpty(fetchCategoryNames()),
  ]);
  names.districts = new Map(districts.features.map((f) => [f.properties.code, f.properties.name]));
  names.categories = categories;
  if (districts.features.length) await cityMap.setDistricts(districts);

  connect(keyFromPage() ?? await askForKey());
  invalidate();
}

main();
