// The workbench's rules, free of the DOM so node can test them: which tickets are open, in
// which order a department should work them, which actions a status allows, and what an
// action sends. The backend decides in the end (dispatch/tickets/lifecycle.py); these only
// keep buttons that would be refused off the page.

export const OPEN_STATUSES = ['dispatched', 'accepted', 'in_progress', 'returned'];
// What the queue's status filter offers: the open ones, and the finished ones to look back.
export const FILTER_STATUSES = [...OPEN_STATUSES, 'resolved', 'closed'];

const ALL_BUT_MERGED = [...FILTER_STATUSES];
const BOTH = ['department', 'ops'];

// lifecycle.py's MOVES for the actions a department takes: the statuses each starts from,
// who may take it, and whether the backend refuses it without a note. Close, reopen and
// merge belong to the operations centre alone, so the workbench does not offer them.
export const MOVES = {
  accept: { from: ['dispatched'], roles: BOTH },
  start: { from: ['accepted'], roles: BOTH },
  resolve: { from: ['accepted', 'in_progress'], roles: BOTH },
  'request-info': { from: ['accepted', 'in_progress'], roles: BOTH, note: true },
  'provide-info': { from: ['returned'], roles: BOTH },
  // Only the department it was sent to can refuse a ticket; the centre transfers instead.
  reject: { from: ['dispatched', 'accepted'], roles: ['department'], note: true },
  transfer: { from: ['dispatched', 'accepted', 'in_progress'], roles: BOTH, note: true },
  comment: { from: ALL_BUT_MERGED, roles: BOTH, note: true },
};
// Button order: the usual next step first, the ways out after, a comment last.
export const ACTIONS = Object.keys(MOVES);

export const NOTE_MAX = 2000; // ActionBody.note's max_length
export const EVIDENCE_MAX = 20; // ResolveBody.evidence_urls' max_length

/**
 * The actions the signed-in caller may take on a ticket in `status`.
 * @param {{role?: string, triage?: boolean}} who the triage queue cannot reject (the
 *   backend answers 409: there is nowhere to re-route to), it transfers instead.
 */
export function allowedActions(status, { role = 'department', triage = false } = {}) {
  return ACTIONS.filter((action) => MOVES[action].from.includes(status)
    && MOVES[action].roles.includes(role)
    && !(triage && action === 'reject'));
}

export const needsNote = (action) => Boolean(MOVES[action]?.note);

// ---- due times ---------------------------------------------------------------------------

const ms = (iso) => (iso ? Date.parse(iso) : NaN);

/**
 * The deadline a ticket is worked against. A dispatched ticket must first be accepted, so
 * its accept deadline counts (or the resolve one, should that come first: both clocks run);
 * afterwards the resolve deadline. While it waits for information (returned) the clocks are
 * paused and the due times will move, so there is no deadline to show.
 * @returns {{clock: 'accept'|'resolve', at: string|null, paused: boolean}}
 */
export function deadlineOf(ticket) {
  if (ticket.status === 'returned') return { clock: 'resolve', at: ticket.resolve_due_at ?? null, paused: true };
  if (ticket.status === 'dispatched' && ticket.accept_due_at
    && !(ms(ticket.resolve_due_at) < ms(ticket.accept_due_at))) {
    return { clock: 'accept', at: ticket.accept_due_at, paused: false };
  }
  return { clock: 'resolve', at: ticket.resolve_due_at ?? null, paused: false };
}

/** The queue's order: the earliest deadline first; paused tickets (nothing runs out while
 *  the department waits) and tickets without a deadline after them. Times are compared as
 *  instants, not text: the offsets of two ISO strings need not match. */
export function queueOrder(tickets) {
  const keyed = tickets.map((ticket) => {
    const deadline = deadlineOf(ticket);
    const due = ms(deadline.at);
    return { ticket, paused: deadline.paused ? 1 : 0, due: Number.isFinite(due) ? due : Infinity };
  });
  keyed.sort((a, b) => a.paused - b.paused || compare(a.due, b.due)
    || compare(ms(a.ticket.created_at), ms(b.ticket.created_at))
    || compare(a.ticket.ticket_id, b.ticket.ticket_id));
  return keyed.map((k) => k.ticket);
}

function compare(a, b) {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return 0;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** 2天3小时, 1小时05分, 12分30秒, 40秒. */
export function duration(milliseconds) {
  const s = Math.floor(Math.abs(milliseconds) / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, '0');
  if (d) return `${d}天${h}小时`;
  if (h) return `${h}小时${pad(m)}分`;
  if (m) return `${m}分${pad(s % 60)}秒`;
  return `${s}秒`;
}

/** The countdown shown beside a ticket: 接单剩余 12分30秒 / 办结超时 1小时05分. */
export function countdown({ clock, at, paused }, now = Date.now()) {
  if (paused) return { text: '时限暂停（待补充信息）', overdue: false };
  const due = ms(at);
  if (!Number.isFinite(due)) return { text: '无时限', overdue: false };
  const left = due - now;
  const name = clock === 'accept' ? '接单' : '办结';
  return left >= 0
    ? { text: `${name}剩余 ${duration(left)}`, overdue: false }
    : { text: `${name}超时 ${duration(left)}`, overdue: true };
}

// ---- actions -----------------------------------------------------------------------------

/** Evidence URLs typed one a line (or separated by spaces, ，or 、 — not by ASCII commas,
 *  which a URL may contain): the http(s) ones, and what is not a URL, so the form can say
 *  so before the backend refuses the whole action. */
export function parseEvidence(text = '') {
  const urls = [];
  const bad = [];
  for (const item of text.split(/[\s，、]+/).filter(Boolean)) {
    let url = null;
    try {
      url = new URL(item);
    } catch {
      // not a URL at all
    }
    if (url && (url.protocol === 'http:' || url.protocol === 'https:')) urls.push(item);
    else bad.push(item);
  }
  return { urls, bad };
}

/**
 * The JSON body of an action, or why it cannot be sent yet (in Chinese, for the form).
 * Only the fields the action's model takes are sent: the backend forbids extra ones.
 * @param {string} action
 * @param {number} version the ticket's version as shown (a stale one gets a 409)
 * @param {{note?: string, toDepartment?: string, evidence?: string, currentDepartment?: string}} input
 * @returns {{body: object} | {error: string}}
 */
export function actionBody(action, version, { note = '', toDepartment = '', evidence = '',
  currentDepartment = '' } = {}) {
  const body = { version, note: note.trim() };
  if (needsNote(action) && !body.note) {
    return { error: action === 'reject' || action === 'transfer' ? '请填写原因' : '请填写说明' };
  }
  if (body.note.length > NOTE_MAX) return { error: `说明不能超过 ${NOTE_MAX} 字` };
  if (action === 'transfer') {
    const to = toDepartment.trim();
    if (!to) return { error: '请选择转派的部门' };
    if (to === currentDepartment) return { error: '工单已在该部门' };
    body.to_department = to;
  }
  if (action === 'resolve') {
    const { urls, bad } = parseEvidence(evidence);
    if (bad.length) return { error: `不是有效的网址（需以 http:// 或 https:// 开头）：${bad.join('、')}` };
    if (urls.length > EVIDENCE_MAX) return { error: `佐证网址最多 ${EVIDENCE_MAX} 个` };
    body.evidence_urls = urls;
  }
  return { body };
}

/** What a refused action means, for the person who clicked. */
export function refusalText(status, detail) {
  const why = detail ? `：${detail}` : '';
  if (status === 409) return `工单已被他人更新，或当前状态不允许此操作${why}。已重新载入工单。`;
  if (status === 403) return `无权执行此操作${why}`;
  if (status === 400 || status === 422) return `请求有误${why}`;
  if (status === 404) return `工单不存在${why}`;
  return `操作失败（HTTP ${status}）${why}`;
}

/** Who did it, from the history's actor ("department:water#12", "ops#3", "system:router"). */
export function actorText(actor, departmentNames = new Map()) {
  if (!actor) return '—';
  const [who] = actor.split('#');
  const [role, scope] = who.split(':');
  if (role === 'department' && scope) return departmentNames.get(scope) ?? scope;
  if (role === 'ops') return '指挥中心';
  if (role === 'system') return '系统';
  if (role === 'source') return `来源 ${scope ?? ''}`.trim();
  return actor;
}
