// What the map and the panels show, derived from the store's layers. Pure functions (no DOM,
// no WebGL) so they can be tested under node.
import { PRIORITIES, priorityColor, severityRank } from './labels.js';

// Below this zoom the city is drawn in resolution-7 cells (~5 km²), above it in finer
// resolution-8 cells (~0.7 km²), so a cell stays a readable size on screen.
export const H3_FINE_ZOOM = 11;
export const h3ResolutionForZoom = (zoom) => (zoom < H3_FINE_ZOOM ? 7 : 8);

const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** Incidents, newest first (ISO times of one offset compare as text). */
export function incidentsNewestFirst(incidents) {
  return [...incidents].sort((a, b) => byText(b.opened_at ?? '', a.opened_at ?? '')
    || byText(a.incident_id, b.incident_id));
}

/** The SLA board: most breaches first, then most due soon, then most open. */
export function slaRows(sla, departmentNames) {
  return [...sla]
    .map((row) => ({ ...row, name: departmentNames.get(row.department_code) ?? row.department_code }))
    .sort((a, b) => b.breached - a.breached || b.due_within_1h - a.due_within_1h
      || b.open - a.open || byText(a.department_code, b.department_code));
}

/** Device health per district, the least online first (where the trouble is). */
export function deviceRows(health, districtNames) {
  return [...health]
    .map((row) => ({
      ...row,
      name: districtNames.get(row.district_code) ?? row.district_code,
      // A district with offline devices but none registered (just disabled) shows 0 %.
      online: row.devices > 0 ? Math.max(0, (row.devices - row.offline) / row.devices) : 0,
    }))
    .sort((a, b) => a.online - b.online || byText(a.district_code, b.district_code));
}

/** Active alarms, the most severe first, then the newest. */
export function alarmsBySeverity(alarms) {
  return [...alarms].sort((a, b) => severityRank(a.severity) - severityRank(b.severity)
    || byText(b.raised_at ?? '', a.raised_at ?? ''));
}

/** The h3 layer's cells of one resolution. */
export function hexagonsAt(cells, res) {
  return [...cells].filter((cell) => cell.res === res && cell.open > 0);
}

/** The most urgent priority with an open incident in a cell. */
export function topPriority(byPriority = {}) {
  return PRIORITIES.find((p) => byPriority[p] > 0) ?? 'low';
}

/** A cell's colour: the hue of its most urgent priority, more opaque the more is open
 *  (absolute, not relative to the busiest cell, so colours do not shift as others change). */
export function hexagonColor(cell) {
  const alpha = Math.min(220, 70 + 30 * cell.open);
  return [...priorityColor(topPriority(cell.by_priority)), alpha];
}

/** Incidents that can be placed on the map. */
export function placedIncidents(incidents) {
  return [...incidents].filter((i) => Number.isFinite(i.lon) && Number.isFinite(i.lat));
}

/**
 * Map points for active alarms. Alarms carry no coordinates, only their device's district,
 * so they are gathered into one point per district (at its label point) showing how many
 * and the worst severity; an alarm that does carry lon/lat gets its own point.
 */
export function alarmPoints(alarms, districtPoints) {
  const points = [];
  const perDistrict = new Map();
  for (const alarm of alarms) {
    if (Number.isFinite(alarm.lon) && Number.isFinite(alarm.lat)) {
      points.push({ position: [alarm.lon, alarm.lat], count: 1, severity: alarm.severity,
        district: alarm.district });
      continue;
    }
    const at = districtPoints.get(alarm.district);
    if (!at) continue; // a device without a district has no place on the map
    const group = perDistrict.get(alarm.district)
      ?? { position: at, count: 0, severity: alarm.severity, district: alarm.district };
    group.count += 1;
    if (severityRank(alarm.severity) < severityRank(group.severity)) group.severity = alarm.severity;
    perDistrict.set(alarm.district, group);
  }
  return points.concat([...perDistrict.values()]);
}

/** Where to write each district's name: its `label_point` property if the pack gives one,
 *  else the centroid of its largest polygon's outer ring. */
export function districtLabelPoints(collection) {
  return collection.features.map((feature) => ({
    code: feature.properties.code,
    name: feature.properties.name ?? feature.properties.code,
    position: feature.properties.label_point ?? largestRingCentroid(feature.geometry),
  }));
}

function outerRings(geometry) {
  if (geometry.type === 'Polygon') return [geometry.coordinates[0]];
  if (geometry.type === 'MultiPolygon') return geometry.coordinates.map((polygon) => polygon[0]);
  return [];
}

function largestRingCentroid(geometry) {
  let best = null;
  for (const ring of outerRings(geometry)) {
    // Shoelace formula: signed area and area-weighted centroid of the ring.
    let area = 0;
    let cx = 0;
    let cy = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
      const cross = ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
      area += cross;
      cx += (ring[j][0] + ring[i][0]) * cross;
      cy += (ring[j][1] + ring[i][1]) * cross;
    }
    if (area !== 0 && (!best || Math.abs(area) > best.size)) {
      best = { size: Math.abs(area), point: [cx / (3 * area), cy / (3 * area)] };
    }
  }
  return best?.point ?? [0, 0];
}

/** [[west, south], [east, north]] around every district. */
export function boundsOf(collection) {
  let west = Infinity;
  let south = Infinity;
  let east = -Infinity;
  let north = -Infinity;
  for (const feature of collection.features) {
    for (const ring of outerRings(feature.geometry)) {
      for (const [lon, lat] of ring) {
        west = Math.min(west, lon);
        east = Math.max(east, lon);
        south = Math.min(south, lat);
        north = Math.max(north, lat);
      }
    }
  }
  return [[west, south], [east, north]];
}

/** Departments or districts the incident list and details name, with the code as fallback. */
export const nameOf = (names, code) => (code == null ? '—' : names.get(code) ?? code);
