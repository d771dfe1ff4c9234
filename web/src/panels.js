// The side panels: incident list and details, SLA board, device health, alarms, status.
// Text goes in through textContent only: event texts come from the public, never as HTML.
import {
  PRIORITY_LABEL, SEVERITY_LABEL, SLA_LABEL, SOURCE_LABEL, STATUS_LABEL,
  css, label, priorityColor, severityColor, slaColor,
} from './labels.js';
import { nameOf } from './derive.js';

// Enough for any real shift; beyond it the DOM would cost more than the list is worth.
export const MAX_INCIDENT_ROWS = 2000;
export const MAX_ALARM_ROWS = 200;

/** Creates an element: h('td', {className: 'n'}, 'text', child…). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.startsWith('data-')) el.setAttribute(name, value);
    else if (name === 'style') Object.assign(el.style, value);
    else el[name] = value;
  }
  el.append(...children.filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

export function badge(text, rgb) {
  return h('span', { className: 'badge', style: { background: css(rgb, 0.22), color: css(rgb) } }, text);
}

/** 14:03:05 today, 11-25 14:03 on another day. */
export function clock(when) {
  if (!when) return '—';
  const date = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(date.getTime())) return '—';
  const time = date.toLocaleTimeString('zh-CN', { hour12: false });
  if (date.toDateString() === new Date().toDateString()) return time;
  const md = `${String(date.getMonth() + 1).padStart(2, '0')}-${String(date.getDate()).padStart(2, '0')}`;
  return `${md} ${time.slice(0, 5)}`;
}

export function slaBadge(state) {
  if (!state) return null;
  return badge(label(SLA_LABEL, state), slaColor(state));
}

// ---- incidents ---------------------------------------------------------------------------

export class IncidentList {
  constructor(listEl, countEl) {
    this.listEl = listEl;
    this.countEl = countEl;
    // incident_id → {el, value}: a row is rebuilt only when its value object changed (the
    // store replaces values, never mutates them), so a delta touches few DOM nodes.
    this.rows = new Map();
  }

  /** Names changed (e.g. the departments arrived): every row must be redrawn. */
  invalidate() {
    this.rows.clear();
  }

  render(sorted, names, selectedId) {
    const shown = sorted.slice(0, MAX_INCIDENT_ROWS);
    const elements = shown.map((incident) => {
      let row = this.rows.get(incident.incident_id);
      if (!row) {
        row = { el: h('li', { className: 'incident', 'data-testid': 'incident',
          'data-incident-id': incident.incident_id }), value: null };
        this.rows.set(incident.incident_id, row);
      }
      if (row.value !== incident) {
        row.el.replaceChildren(...incidentRow(incident, names));
        row.el.style.borderLeftColor = css(priorityColor(incident.priority));
        row.value = incident;
      }
      row.el.classList.toggle('selected', incident.incident_id === selectedId);
      return row.el;
    });
    const live = new Set(shown.map((incident) => incident.incident_id));
    for (const id of this.rows.keys()) if (!live.has(id)) this.rows.delete(id);
    this.listEl.replaceChildren(...elements);
    this.countEl.textContent = sorted.length > shown.length
      ? `${sorted.length}（显示最新 ${shown.length}）` : String(sorted.length);
  }
}

function incidentRow(incident, names) {
  return [
    h('div', { className: 'row-main' },
      badge(label(PRIORITY_LABEL, incident.priority), priorityColor(incident.priority)),
      h('span', { className: 'title' }, nameOf(names.categories, incident.category)),
      h('span', { className: 'muted' }, `上报 ${incident.reports} 次`)),
    h('div', { className: 'row-sub' },
      h('span', { className: 'dept' }, incident.department_code
        ? nameOf(names.departments, incident.department_code) : '待派单'),
      incident.status ? h('span', {}, label(STATUS_LABEL, incident.status)) : null,
      slaBadge(incident.sla_state),
      h('span', { className: 'muted time' }, clock(incident.opened_at))),
  ];
}

/** The selected incident's details, with its ticket and latest reports when known. */
export function renderDetails(el, incident, { tickets, events }, names, onClose) {
  el.hidden = !incident;
  if (!incident) return;
  const ticket = incident.ticket_id ? tickets.get(incident.ticket_id) : null;
  const reports = [...events.values()]
    .filter((event) => event.incident_id === incident.incident_id)
    .sort((a, b) => (a.occurred_at < b.occurred_at ? 1 : -1))
    .slice(0, 3);
  const field = (term, value) => [h('dt', {}, term), h('dd', {}, value ?? '—')];
  el.replaceChildren(
    h('button', { className: 'close', type: 'button', title: '关闭', onclick: onClose }, '×'),
    h('h3', {}, nameOf(names.categories, incident.category), ' ',
      badge(label(PRIORITY_LABEL, incident.priority), priorityColor(incident.priority))),
    h('dl', {},
      ...field('区县', nameOf(names.districts, incident.district_code)),
      ...field('上报', `${incident.reports} 次（${incident.sources.map((s) => label(SOURCE_LABEL, s)).join('、')}）`),
      ...field('首报', clock(incident.opened_at)),
      ...field('最近', clock(incident.last_seen)),
      ...field('工单', ticket?.title ?? incident.ticket_id ?? '未生成'),
      ...field('状态', label(STATUS_LABEL, incident.status)),
      ...field('部门', nameOf(names.departments, incident.department_code)),
      ...field('SLA', label(SLA_LABEL, incident.sla_state)),
      ...field('办结时限', clock(incident.resolve_due_at))),
    ...reports.map((event) => h('p', { className: 'report' },
      h('span', { className: 'muted' }, `${clock(event.occurred_at)} ${label(SOURCE_LABEL, event.source)}：`),
      event.text)),
  );
}

// ---- boards ------------------------------------------------------------------------------

export function renderSla(tbody, rows) {
  tbody.replaceChildren(...rows.map((row) => h('tr', { 'data-department': row.department_code },
    h('td', { className: 'name', title: row.name }, row.name),
    h('td', { className: 'n' }, row.open),
    h('td', { className: `n${row.due_within_1h ? ' warn' : ''}` }, row.due_within_1h),
    h('td', { className: `n${row.breached ? ' bad' : ''}` }, row.breached))));
  if (!rows.length) tbody.append(emptyRow(4, '暂无在办工单'));
}

export function renderDevices(tbody, rows) {
  tbody.replaceChildren(...rows.map((row) => h('tr', { 'data-district': row.district_code },
    h('td', { className: 'name' }, row.name),
    h('td', { className: 'n' }, row.devices),
    h('td', { className: `n${row.offline ? ' bad' : ''}` }, row.offline),
    h('td', { className: 'n' }, meter(row.online)))));
  if (!rows.length) tbody.append(emptyRow(4, '暂无设备'));
}

function meter(fraction) {
  const pct = Math.round(fraction * 1000) / 10;
  const rgb = fraction >= 0.98 ? [34, 197, 94] : fraction >= 0.9 ? [234, 179, 8] : [239, 68, 68];
  return h('span', { className: 'meter', style: { color: css(rgb) } }, `${pct}%`);
}

function emptyRow(span, text) {
  return h('tr', { className: 'empty' }, h('td', { colSpan: span }, text));
}

export function renderAlarms(listEl, countEl, sorted, names) {
  const shown = sorted.slice(0, MAX_ALARM_ROWS);
  listEl.replaceChildren(...shown.map((alarm) => h('li', {
    className: 'alarm', 'data-alarm-id': alarm.alarm_id,
    style: { borderLeftColor: css(severityColor(alarm.severity)) },
  },
  h('div', { className: 'row-main' },
    badge(label(SEVERITY_LABEL, alarm.severity), severityColor(alarm.severity)),
    h('span', { className: 'title' }, alarm.alarm_type === 'no-data' ? '设备离线' : alarm.alarm_type),
    h('span', { className: 'muted' }, alarm.profile)),
  h('div', { className: 'row-sub' },
    h('span', {}, nameOf(names.districts, alarm.district)),
    alarm.value != null ? h('span', {}, `值 ${alarm.value}`) : null,
    h('span', { className: 'muted time' }, clock(alarm.raised_at))),
  alarm.reason ? h('div', { className: 'row-sub muted' }, alarm.reason) : null)));
  countEl.textContent = sorted.length > shown.length
    ? `${sorted.length}（显示 ${shown.length}）` : String(sorted.length);
}

// ---- header ------------------------------------------------------------------------------

const STATE_TEXT = {
  connecting: '连接中…', live: '已连接', reconnecting: '重新连接中', refused: '密钥被拒绝',
};

export function renderStatus(el, status, store) {
  const parts = [STATE_TEXT[status.state] ?? status.state];
  if (status.state === 'reconnecting' && status.retryIn) {
    parts[0] += `（${Math.ceil(status.retryIn / 1000)} 秒后）`;
  }
  if (status.reason && status.state !== 'live') parts.push(status.reason);
  parts.push(`seq ${store.seq}`, `更新 ${clock(store.updatedAt)}`);
  el.textContent = parts.join(' · ');
  el.dataset.state = status.state;
}

const COUNT_LABEL = [['incidents', '事件'], ['tickets', '工单'], ['alarms', '告警'], ['events', '上报']];

export function renderCounts(el, counts) {
  el.replaceChildren(...COUNT_LABEL.map(([layer, text]) =>
    h('span', { className: 'count' }, text, ' ', h('b', {}, counts[layer] ?? 0))));
}

export function renderLegend(el) {
  const item = (text, rgb) => h('span', {}, h('i', { style: { background: css(rgb) } }), text);
  el.replaceChildren(
    h('div', {}, '事件/网格：', ...Object.entries(PRIORITY_LABEL)
      .map(([p, text]) => item(text, priorityColor(p)))),
    h('div', {}, '告警：', ...Object.entries(SEVERITY_LABEL)
      .map(([s, text]) => item(text, severityColor(s)))),
  );
}
