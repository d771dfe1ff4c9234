// The department workbench (/workbench): a department signs in with its API key, works its
// open tickets earliest deadline first, and accepts, starts, rejects, transfers, asks for
// information and resolves them. Plain HTTP against /api/v1/tickets, polled every 10 s: a
// department's queue changes a few times an hour, and the live feed (/ws/ops) is the
// operations centre's alone.
import 'maplibre-gl/dist/maplibre-gl.css';
import './style.css';
import './workbench.css';
import {
  ApiError, actOnTicket, fetchCategoryNames, fetchDepartments, fetchDistricts, listTickets,
  orEmpty, readTicket, whoami,
} from './api.js';
import { nameOf } from './derive.js';
import { askForKey, forgetKey, keyFromPage } from './key.js';
import {
  ACTION_LABEL, PRIORITY_LABEL, STATUS_LABEL, css, label, priorityColor, slaColor,
} from './labels.js';
import { badge, clock, h, slaBadge } from './panels.js';
import { TicketMap } from './ticketmap.js';
import {
  FILTER_STATUSES, NOTE_MAX, OPEN_STATUSES, actionBody, actorText, allowedActions, countdown,
  deadlineOf, needsNote, queueOrder, refusalText,
} from './tickets.js';

const STORAGE = 'workbench.apiKey'; // not the dashboard's 'ops.apiKey': each page its own key
const REFRESH_MS = 10_000;
const TICK_MS = 1_000; // countdowns are re-written every second, without a request
const PER_PAGE = 200; // the API's most
const MAX_PAGES = 5; // 1000 tickets: far beyond a department's day; the rest is counted only

const NOTE_LABEL = {
  reject: '退回原因', transfer: '转派原因', 'request-info': '需要补充的信息', comment: '备注内容',
};

const $ = (id) => document.getElementById(id);

/** The signed-in key and what it is; replaced on sign-out, so answers that arrive for an
 *  earlier session can tell they are stale (`s !== session`) and are dropped. */
let session = null;

const names = { departments: new Map(), categories: new Map(), districts: new Map() };
let departments = []; // [{code, name, is_triage, …}]: the transfer picker
let districtsReady; // Promise of the districts GeoJSON, for the map
let ticketMap = null;
let mapFailed = false;
let mapShows = ''; // which ticket (and where) the map shows: it is moved only when that changes

const ui = {
  filter: 'open', // 'open' (every open status) or one status code
  tickets: [], // the queue, in working order
  total: 0,
  selectedId: null,
  ticket: null, // TicketRead of the selected ticket
  gone: null, // the selected ticket after it left this department (reject, transfer)
  form: null, // the action form being filled: {action, note, department, evidence}
  busy: false, // an action is being sent: its buttons are disabled
  message: null, // {kind: 'ok'|'error'|'info', text}
};

// ---- session -----------------------------------------------------------------------------

async function signIn(key) {
  renderStatus('connecting', '登录中…');
  let who;
  try {
    who = await identify(key);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      forgetKey(STORAGE); // a refused key must not come back from storage on the next visit
      signIn(await askForKey(`密钥被拒绝：${error.detail || `HTTP ${error.status}`}`, STORAGE));
    } else {
      // The hub is down or restarting: try the same key again, it was not refused.
      renderStatus('error', `无法连接：${error.message}；${REFRESH_MS / 1000} 秒后重试`);
      setTimeout(() => signIn(key), REFRESH_MS);
    }
    return;
  }
  session = { key, ...who, loading: false, again: false, timer: null };
  $('sign-out').hidden = false;
  renderWho();
  loadDepartments(session);
  session.timer = setInterval(() => {
    if (!document.hidden) refreshQueue(); // a hidden tab catches up when it is shown again
  }, REFRESH_MS);
  refreshQueue();
}

/** Checks the key and finds whose it is: the operations centre's or a department's (401 for
 *  an unknown key; any other role may not use the workbench: 403 as the tickets API says). */
async function identify(key) {
  const me = await whoami(key);
  if (me.role !== 'ops' && me.role !== 'department') {
    throw new ApiError('/api/v1/whoami', 403, `${me.name} 不是部门或指挥中心的密钥`);
  }
  return { role: me.role, department: me.role === 'department' ? me.scope : null };
}

async function loadDepartments(s) {
  try {
    const list = await fetchDepartments(s.key);
    if (s !== session) return;
    departments = list;
    names.departments = new Map(list.map((d) => [d.code, d.name]));
    renderWho();
    renderNames();
    // The transfer picker and the triage flag (no reject) come from the list; a form being
    // typed in is left alone (its picker is filled when it is opened again).
    if (!ui.form) renderTicket();
  } catch (error) {
    console.warn('departments unavailable, showing codes:', error.message);
  }
}

async function signOut(reason = '') {
  if (session) clearInterval(session.timer);
  session = null;
  forgetKey(STORAGE);
  Object.assign(ui, { tickets: [], total: 0, selectedId: null, ticket: null, gone: null,
    form: null, busy: false, message: null });
  $('sign-out').hidden = true;
  renderWho();
  renderStatus('refused', '未登录');
  renderQueue();
  renderTicket();
  signIn(await askForKey(reason, STORAGE));
}

/** A request answered 401: the key was revoked while signed in. */
const refused = (error) => error instanceof ApiError && error.status === 401;

// ---- data --------------------------------------------------------------------------------

/** Reloads the queue. One load at a time: a call during a load (an action's refresh, a
 *  filter change) runs once more after it, so its answer is never lost or overtaken. */
async function refreshQueue() {
  const s = session;
  if (!s) return;
  if (s.loading) {
    s.again = true;
    return;
  }
  s.loading = true;
  const filter = ui.filter;
  try {
    const statuses = filter === 'open' ? OPEN_STATUSES : [filter];
    const items = [];
    let total = 0;
    for (let page = 1; page <= MAX_PAGES; page += 1) {
      const answer = await listTickets(s.key, { statuses, page, perPage: PER_PAGE });
      items.push(...answer.items);
      total = answer.total;
      if (items.length >= total || answer.items.length < PER_PAGE) break;
    }
    if (s !== session || filter !== ui.filter) return;
    ui.tickets = queueOrder(items);
    ui.total = total;
    if (s.role === 'department' && !s.department && items.length) {
      s.department = items[0].department_code; // the key had no tickets at sign-in
      renderWho();
    }
    renderStatus('live', `已更新 ${clock(new Date())}`);
    renderQueue();
    followSelected();
  } catch (error) {
    if (s !== session) return;
    if (refused(error)) {
      signOut(`密钥被拒绝：${error.detail}`);
      return;
    }
    renderStatus('error', `刷新失败：${error.message}`);
  } finally {
    s.loading = false;
    if (s.again && s === session) {
      s.again = false;
      refreshQueue();
    }
  }
}

/** The open ticket changed elsewhere (the queue shows a newer version): reload it, unless
 *  someone is filling in an action — then their submit meets the 409 and reloads. */
function followSelected() {
  const summary = ui.tickets.find((t) => t.ticket_id === ui.selectedId);
  if (summary && ui.ticket && summary.version > ui.ticket.version && !ui.form && !ui.busy) {
    loadTicket(ui.selectedId);
  }
}

async function loadTicket(ticketId) {
  const s = session;
  if (!s) return;
  try {
    const ticket = await readTicket(s.key, ticketId);
    if (s !== session || ui.selectedId !== ticketId) return;
    ui.ticket = ticket;
    ui.gone = null;
  } catch (error) {
    if (s !== session || ui.selectedId !== ticketId) return;
    if (refused(error)) {
      signOut(`密钥被拒绝：${error.detail}`);
      return;
    }
    ui.ticket = null;
    ui.message = { kind: 'error', text: error instanceof ApiError && error.status === 403
      ? `无权查看此工单（可能已转至其他部门）：${error.detail}`
      : `工单载入失败：${error.message}` };
  }
  renderTicket();
}

function select(ticketId) {
  if (ticketId === ui.selectedId && ui.ticket) {
    loadTicket(ticketId); // a second click refreshes it, keeping a form being filled in
    return;
  }
  Object.assign(ui, { selectedId: ticketId, ticket: null, gone: null, form: null, message: null });
  renderQueue();
  renderTicket();
  loadTicket(ticketId);
}

// ---- actions -----------------------------------------------------------------------------

function openForm(action) {
  if (ui.form?.action !== action) ui.form = { action, note: '', department: '', evidence: '' };
  ui.message = null;
  renderTicket();
  const first = document.querySelector('[data-testid="action-department"]')
    ?? document.querySelector('[data-testid="action-note"]');
  first?.focus();
}

function closeForm() {
  ui.form = null;
  renderTicket();
}

async function submit() {
  const s = session;
  const ticket = ui.ticket;
  const form = ui.form;
  if (!s || !ticket || !form || ui.busy) return;
  const made = actionBody(form.action, ticket.version, {
    note: form.note, toDepartment: form.department, evidence: form.evidence,
    currentDepartment: ticket.department_code,
  });
  if (made.error) {
    ui.message = { kind: 'error', text: made.error };
    renderMessage();
    return;
  }
  const verb = label(ACTION_LABEL, form.action);
  ui.busy = true;
  ui.message = { kind: 'info', text: `正在提交：${verb}…` };
  renderTicket();
  let reload = false;
  try {
    const result = await actOnTicket(s.key, ticket.ticket_id, form.action, made.body);
    if (s !== session) return;
    ui.form = null;
    ui.message = { kind: 'ok', text: doneText(verb, result, ticket) };
    if (ui.selectedId === ticket.ticket_id) {
      if (result.ticket) {
        ui.ticket = result.ticket;
      } else {
        // After a reject or transfer the department may no longer read it: what is known.
        ui.ticket = null;
        ui.gone = { ...ticket, status: result.status, department_code: result.department_code,
          version: result.version };
      }
    }
  } catch (error) {
    if (s !== session) return;
    if (refused(error)) {
      signOut(`密钥被拒绝：${error.detail}`);
      return;
    }
    if (error instanceof ApiError) {
      ui.message = { kind: 'error', text: refusalText(error.status, error.detail) };
      // 409: changed meanwhile or not allowed now; 403/404: no longer ours. Show what it is
      // now. A 400 (a note missing) keeps the form as typed, to be corrected.
      reload = [403, 404, 409].includes(error.status);
    } else {
      ui.message = { kind: 'error', text: `网络错误，操作可能未提交：${error.message}` };
      reload = true;
    }
  } finally {
    if (s === session) {
      ui.busy = false;
      renderTicket();
      refreshQueue();
      if (reload && ui.selectedId === ticket.ticket_id) loadTicket(ticket.ticket_id);
    }
  }
}

function doneText(verb, result, before) {
  if (result.department_code !== before.department_code) {
    return `已${verb}：工单现由 ${nameOf(names.departments, result.department_code)} 处理`
      + `（状态 ${label(STATUS_LABEL, result.status)}）`;
  }
  return `${verb}成功，当前状态：${label(STATUS_LABEL, result.status)}`;
}

// ---- render: header and queue ------------------------------------------------------------

function renderStatus(state, text) {
  const el = $('status');
  el.textContent = text;
  el.dataset.state = state; // style.css colours live and refused; the rest amber
}

function renderWho() {
  const el = $('who');
  let text = '';
  if (session?.role === 'ops') text = '指挥中心（全部部门）';
  else if (session?.department) {
    text = `${nameOf(names.departments, session.department)}（${session.department}）`;
  } else if (session) text = '本部门（暂无工单，无法显示部门名称）';
  el.textContent = text;
  el.dataset.role = session?.role ?? '';
  el.dataset.department = session?.department ?? '';
  document.title = session?.department
    ? `部门工作台 · ${nameOf(names.departments, session.department)}` : '部门工作台';
}

function renderQueue() {
  const list = $('queue');
  const showDepartment = session?.role === 'ops';
  list.replaceChildren(...ui.tickets.map((ticket) => queueItem(ticket, showDepartment)));
  if (!ui.tickets.length) {
    list.append(h('li', { className: 'wb-empty muted' }, session ? '暂无工单' : '请先登录'));
  }
  const shown = ui.tickets.length;
  $('queue-count').textContent = ui.total > shown ? `${shown} / 共 ${ui.total}` : String(shown);
  const bySla = (state) => ui.tickets.filter((t) => t.sla_state === state).length;
  const breached = bySla('breached');
  const warning = bySla('warning');
  $('queue-summary').replaceChildren(...[
    breached ? h('span', { className: 'wb-bad' }, `已超时 ${breached}`) : null,
    warning ? h('span', { className: 'wb-warn' }, `即将超时 ${warning}`) : null,
  ].filter(Boolean));
}

function queueItem(ticket, showDepartment) {
  const where = [
    nameOf(names.categories, ticket.category),
    ticket.district_code ? nameOf(names.districts, ticket.district_code) : null,
    showDepartment ? nameOf(names.departments, ticket.department_code) : null,
  ].filter(Boolean).join(' · ');
  return h('li', {
    className: `wb-item${ticket.ticket_id === ui.selectedId ? ' selected' : ''}`,
    tabIndex: 0,
    'data-testid': 'queue-item',
    'data-ticket-id': ticket.ticket_id,
    'data-status': ticket.status,
    'data-sla': ticket.sla_state,
    style: { borderLeftColor: css(slaColor(ticket.sla_state)) },
  },
  h('div', { className: 'row-main' },
    badge(label(PRIORITY_LABEL, ticket.priority), priorityColor(ticket.priority)),
    h('span', { className: 'title', title: ticket.title }, ticket.title),
    ticket.escalation_level > 0 ? h('span', { className: 'wb-bad' }, `督办 L${ticket.escalation_level}`) : null),
  h('div', { className: 'row-sub' },
    h('span', {}, label(STATUS_LABEL, ticket.status)),
    h('span', { className: 'dept muted' }, where),
    dueSpan(deadlineOf(ticket))));
}

/** A countdown the 1-second tick keeps current (see tick()). */
function dueSpan(deadline) {
  const { text, overdue } = countdown(deadline);
  const live = !deadline.paused && deadline.at;
  return h('span', {
    className: `time wb-due${overdue ? ' overdue' : ''}`,
    ...(live ? { 'data-deadline-at': deadline.at, 'data-clock': deadline.clock } : {}),
  }, text);
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-deadline-at]')) {
    const { text, overdue } = countdown({ clock: el.dataset.clock, at: el.dataset.deadlineAt }, now);
    if (el.textContent !== text) el.textContent = text;
    el.classList.toggle('overdue', overdue);
  }
}

// ---- render: the ticket ------------------------------------------------------------------

/** Names arrived (departments, categories, districts): redraw what shows them, but not the
 *  action form, where someone may be typing. */
function renderNames() {
  renderQueue();
  const ticket = ui.ticket ?? ui.gone;
  if (ticket) renderHead(ticket);
  if (ui.ticket) {
    renderFields(ui.ticket);
    renderHistory(ui.ticket);
  }
}

function renderMessage() {
  const el = $('ticket-message');
  el.hidden = !ui.message;
  el.textContent = ui.message?.text ?? '';
  el.dataset.kind = ui.message?.kind ?? '';
}

function renderTicket() {
  renderMessage();
  const ticket = ui.ticket ?? ui.gone;
  const empty = $('ticket-empty');
  empty.hidden = Boolean(ticket) || Boolean(ui.message);
  empty.textContent = !session ? '' : ui.selectedId ? '载入中…' : '请从左侧队列选择工单';
  $('ticket-view').hidden = !ticket;
  if (!ticket) return;
  const full = Boolean(ui.ticket); // a gone ticket has only its summary: no details to show
  renderHead(ticket);
  renderActions(full ? ticket : null);
  $('ticket-body').hidden = !full;
  $('history-title').hidden = !full;
  $('ticket-history').hidden = !full;
  if (!full) return;
  renderFields(ticket);
  renderHistory(ticket);
  showOnMap(ticket);
}

function renderHead(ticket) {
  $('ticket-head').replaceChildren(
    h('h2', { className: 'wb-title' }, ticket.title),
    h('div', { className: 'wb-head-sub' },
      h('span', { className: 'wb-status' }, label(STATUS_LABEL, ticket.status)),
      h('code', { className: 'wb-code', 'data-testid': 'ticket-status', title: '状态代码' }, ticket.status),
      badge(label(PRIORITY_LABEL, ticket.priority), priorityColor(ticket.priority)),
      slaBadge(ticket.sla_state),
      ticket.escalation_level > 0 ? h('span', { className: 'wb-bad' }, `督办 L${ticket.escalation_level}`) : null,
      ui.ticket ? dueSpan(deadlineOf(ticket)) : null),
  );
}

function renderActions(ticket) {
  const el = $('ticket-actions');
  if (!ticket) {
    el.replaceChildren(h('p', { className: 'muted' }, '工单已离开本部门，无需再处理。'));
    return;
  }
  const allowed = allowedActions(ticket.status, { role: session?.role, triage: isTriage() });
  if (ui.form && !allowed.includes(ui.form.action)) ui.form = null; // the status moved on
  if (!allowed.length) {
    el.replaceChildren(h('p', { className: 'muted' }, '此状态下没有可执行的操作。'));
    return;
  }
  const buttons = allowed.map((action) => h('button', {
    type: 'button',
    className: `wb-button${ui.form?.action === action ? ' active' : ''}${action === 'reject' ? ' danger' : ''}`,
    'data-testid': `action-${action}`,
    'data-action': action,
    disabled: ui.busy,
    onclick: () => openForm(action),
  }, label(ACTION_LABEL, action)));
  el.replaceChildren(h('div', { className: 'wb-buttons' }, ...buttons));
  if (ui.form) el.append(actionForm(ui.form, ticket));
}

const isTriage = () => departments.some((d) => d.code === session?.department && d.is_triage);

/** The confirm step every action goes through: a note (required where the backend wants a
 *  reason), the department for a transfer, evidence URLs for a resolve. */
function actionForm(form, ticket) {
  const { action } = form;
  const required = needsNote(action);
  const fields = [h('h3', {}, label(ACTION_LABEL, action))];
  if (action === 'transfer') fields.push(h('label', { className: 'wb-field' }, h('span', {}, '转派至（必填）'),
    departmentPicker(form, ticket)));
  fields.push(h('label', { className: 'wb-field' },
    h('span', {}, required ? `${NOTE_LABEL[action] ?? '说明'}（必填）` : '说明（可选）'),
    h('textarea', {
      'data-testid': 'action-note', rows: 3, maxLength: NOTE_MAX, value: form.note,
      oninput: (event) => { form.note = event.target.value; },
    })));
  if (action === 'resolve') fields.push(h('label', { className: 'wb-field' },
    h('span', {}, '佐证材料网址（可选，每行一个，如现场照片）'),
    h('textarea', {
      'data-testid': 'action-evidence', rows: 2, value: form.evidence,
      placeholder: 'https://…', oninput: (event) => { form.evidence = event.target.value; },
    })));
  fields.push(h('div', { className: 'wb-buttons' },
    h('button', { type: 'submit', className: 'wb-button primary', 'data-testid': 'action-submit',
      disabled: ui.busy }, `确认${label(ACTION_LABEL, action)}`),
    h('button', { type: 'button', className: 'wb-button', 'data-testid': 'action-cancel',
      disabled: ui.busy, onclick: closeForm }, '取消')));
  return h('form', {
    className: 'wb-form', 'data-testid': 'action-form', 'data-action': action, noValidate: true,
    onsubmit: (event) => {
      event.preventDefault();
      submit();
    },
  }, ...fields);
}

function departmentPicker(form, ticket) {
  const onchange = (event) => { form.department = event.target.value; };
  const targets = departments.filter((d) => d.code !== ticket.department_code);
  if (!targets.length) {
    // The directory did not load: the code can still be typed.
    return h('input', { 'data-testid': 'action-department', value: form.department,
      placeholder: '部门代码', oninput: onchange });
  }
  const select = h('select', { 'data-testid': 'action-department', onchange },
    h('option', { value: '' }, '请选择部门'),
    ...targets.map((d) => h('option', { value: d.code },
      `${d.name}${d.is_triage ? '（分拨中心）' : ''}`)));
  select.value = form.department;
  return select;
}

function renderFields(ticket) {
  const field = (term, ...value) => [h('dt', {}, term),
    h('dd', {}, ...(value.length && value.some((v) => v != null && v !== '') ? value : ['—']))];
  const when = (iso) => (iso ? clock(iso) : null);
  $('ticket-fields').replaceChildren(
    ...field('工单号', h('code', {}, ticket.ticket_id)),
    ...field('类别', nameOf(names.categories, ticket.category)),
    ...field('区县', nameOf(names.districts, ticket.district_code)),
    ...field('承办部门', nameOf(names.departments, ticket.department_code)),
    ...field('上报次数', ticket.reports),
    ...field('派单依据', ticket.routing_reason),
    ...(ticket.rejected_by?.length
      ? field('曾退回部门', ticket.rejected_by.map((c) => nameOf(names.departments, c)).join('、')) : []),
    ...field('接单时限', when(ticket.accept_due_at)),
    ...field('办结时限', when(ticket.resolve_due_at)),
    ...field('SLA 策略', ticket.sla_policy),
    ...field('创建', when(ticket.created_at)),
    ...(ticket.accepted_at ? field('接单于', when(ticket.accepted_at)) : []),
    ...(ticket.paused_at ? field('暂停于', `${when(ticket.paused_at)}（等待补充信息）`) : []),
    ...(ticket.resolved_at ? field('办结于', when(ticket.resolved_at)) : []),
    ...(ticket.closed_at ? field('关闭于', when(ticket.closed_at)) : []),
    ...(ticket.reopen_count ? field('重开次数', ticket.reopen_count) : []),
    ...field('版本', ticket.version),
  );
}

function renderHistory(ticket) {
  // The API gives the history oldest first, which is how it is read: newest last.
  $('ticket-history').replaceChildren(...(ticket.history ?? []).map((entry) => {
    const moved = entry.from_status !== entry.to_status;
    const details = entry.details ?? {};
    // A transfer or reject names where it went (and from where): shown instead of the
    // department, which in the history row is already the new one.
    const from = details.transferred_from ?? details.rejected_by;
    const to = details.transferred_to ?? details.rerouted_to;
    return h('li', { className: 'wb-event', 'data-action': entry.action },
      h('div', { className: 'row-main' },
        h('span', { className: 'title' }, label(ACTION_LABEL, entry.action)),
        moved ? h('span', {}, `${entry.from_status ? `${label(STATUS_LABEL, entry.from_status)} → ` : ''}`
          + label(STATUS_LABEL, entry.to_status)) : null,
        h('span', { className: 'muted time' }, clock(entry.at))),
      h('div', { className: 'row-sub muted' },
        h('span', {}, actorText(entry.actor, names.departments)),
        h('span', { className: 'dept' }, to
          ? `${from ? `${nameOf(names.departments, from)} → ` : ''}${nameOf(names.departments, to)}`
          : nameOf(names.departments, entry.department_code))),
      entry.note ? h('p', { className: 'wb-note' }, entry.note) : null,
      evidenceLinks(details.evidence_urls));
  }));
}

function evidenceLinks(urls) {
  if (!Array.isArray(urls) || !urls.length) return null;
  // Only http(s) links become links: a javascript: URL must never be clickable.
  const safe = urls.filter((url) => /^https?:\/\//i.test(String(url)));
  return h('div', { className: 'wb-evidence' }, '佐证：', ...safe.map((url, i) => h('a', {
    href: url, target: '_blank', rel: 'noopener noreferrer', title: url,
  }, `材料${i + 1}`)));
}

function showOnMap(ticket) {
  const where = `${ticket.ticket_id}|${ticket.lon}|${ticket.lat}`;
  if (where === mapShows || mapFailed) return;
  if (!ticketMap) {
    try {
      ticketMap = new TicketMap($('ticket-map'));
    } catch (error) {
      // No WebGL: the map is an aid, the ticket can be worked without it.
      mapFailed = true;
      console.warn('map unavailable:', error);
      $('ticket-map').classList.add('off');
      $('ticket-map').textContent = '地图不可用（浏览器不支持 WebGL）';
      return;
    }
    districtsReady.then((collection) => ticketMap.setDistricts(collection));
  }
  mapShows = where;
  ticketMap.show(ticket);
}

// ---- start -------------------------------------------------------------------------------

function main() {
  const filter = $('status-filter');
  filter.replaceChildren(h('option', { value: 'open' }, '全部在办'),
    ...FILTER_STATUSES.map((status) => h('option', { value: status }, label(STATUS_LABEL, status))));
  filter.value = ui.filter;
  filter.addEventListener('change', () => {
    ui.filter = filter.value;
    ui.tickets = [];
    ui.total = 0;
    renderQueue();
    refreshQueue();
  });
  const queue = $('queue');
  const pick = (event) => {
    const row = event.target.closest('[data-ticket-id]');
    if (row && (event.type === 'click' || event.key === 'Enter')) select(row.dataset.ticketId);
  };
  queue.addEventListener('click', pick);
  queue.addEventListener('keydown', pick);
  $('sign-out').addEventListener('click', () => signOut());
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refreshQueue();
  });
  setInterval(tick, TICK_MS);

  // Public look-ups: names and outlines; the page works with codes if they fail.
  districtsReady = fetchDistricts().catch((error) => {
    console.warn('districts unavailable:', error.message);
    return { type: 'FeatureCollection', features: [] };
  });
  districtsReady.then((collection) => {
    names.districts = new Map(collection.features.map((f) => [f.properties.code, f.properties.name]));
    renderNames();
  });
  orEmpty(fetchCategoryNames()).then((categories) => {
    names.categories = categories;
    renderNames();
  });

  renderQueue();
  renderTicket();
  const key = keyFromPage(STORAGE);
  if (key) signIn(key);
  else askForKey('', STORAGE).then(signIn);
}

main();
