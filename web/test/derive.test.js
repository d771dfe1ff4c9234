import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  alarmPoints, alarmsBySeverity, boundsOf, deviceRows, districtLabelPoints, h3ResolutionForZoom,
  hexagonColor, hexagonsAt, incidentsNewestFirst, slaRows, topPriority,
} from '../src/derive.js';

test('incidents come newest first', () => {
  const sorted = incidentsNewestFirst([
    { incident_id: 'a', opened_at: '2026-11-26T08:00:00+00:00' },
    { incident_id: 'b', opened_at: '2026-11-26T09:00:00+00:00' },
  ]);
  assert.deepEqual(sorted.map((i) => i.incident_id), ['b', 'a']);
});

test('the SLA board puts the most breaches first and names departments', () => {
  const rows = slaRows([
    { department_code: 'water', open: 9, due_within_1h: 3, breached: 0 },
    { department_code: 'housing', open: 2, due_within_1h: 0, breached: 1 },
  ], new Map([['housing', '住建局']]));
  assert.deepEqual(rows.map((r) => r.name), ['住建局', 'water']);
});

test('device health: share online, least online first', () => {
  const rows = deviceRows([
    { district_code: '330302', devices: 10, offline: 0 },
    { district_code: '330303', devices: 4, offline: 1 },
  ], new Map([['330303', '龙湾区']]));
  assert.equal(rows[0].name, '龙湾区');
  assert.equal(rows[0].online, 0.75);
  assert.equal(rows[1].online, 1);
});

test('alarms: most severe first, then newest', () => {
  const sorted = alarmsBySeverity([
    { alarm_id: '1', severity: 'minor', raised_at: '2026-11-26T09:00:00' },
    { alarm_id: '2', severity: 'critical', raised_at: '2026-11-26T08:00:00' },
    { alarm_id: '3', severity: 'critical', raised_at: '2026-11-26T08:30:00' },
  ]);
  assert.deepEqual(sorted.map((a) => a.alarm_id), ['3', '2', '1']);
});

test('alarms without coordinates gather at their district, with the worst severity', () => {
  const points = alarmPoints([
    { district: 'd1', severity: 'minor' },
    { district: 'd1', severity: 'major' },
    { district: 'nowhere', severity: 'critical' },
    { district: 'd1', severity: 'warning', lon: 120.1, lat: 28.1 },
  ], new Map([['d1', [120, 28]]]));
  assert.equal(points.length, 2);
  assert.deepEqual(points.find((p) => p.count === 2), { position: [120, 28], count: 2,
    severity: 'major', district: 'd1' });
});

test('h3: resolution by zoom, cells of one resolution, colour by the most urgent priority', () => {
  assert.equal(h3ResolutionForZoom(9), 7);
  assert.equal(h3ResolutionForZoom(12), 8);
  const cells = [{ res: 7, cell: 'a', open: 2, by_priority: { low: 1, high: 1 } },
    { res: 8, cell: 'b', open: 1, by_priority: { low: 1 } }];
  assert.deepEqual(hexagonsAt(cells, 7).map((c) => c.cell), ['a']);
  assert.equal(topPriority(cells[0].by_priority), 'high');
  assert.deepEqual(hexagonColor(cells[0]).slice(0, 3), [249, 115, 22]);
});

test('district label points: the property when given, else a centroid; and bounds', () => {
  const square = { type: 'Polygon', coordinates: [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]] };
  const collection = { features: [
    { properties: { code: 'a', name: '甲', label_point: [5, 5] }, geometry: square },
    { properties: { code: 'b', name: '乙' }, geometry: { type: 'MultiPolygon',
      coordinates: [square.coordinates, [[[10, 10], [11, 10], [11, 11], [10, 10]]]] } },
  ] };
  const points = districtLabelPoints(collection);
  assert.deepEqual(points[0].position, [5, 5]);
  assert.deepEqual(points[1].position, [1, 1]);
  assert.deepEqual(boundsOf(collection), [[0, 0], [11, 11]]);
});
