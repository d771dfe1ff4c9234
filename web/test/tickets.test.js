import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detailText } from '../src/api.js';
import {
  actionBody, actorText, allowedActions, countdown, deadlineOf, duration, parseEvidence,
  queueOrder, refusalText,
} from '../src/tickets.js';

const ticket = (id, status, resolve, accept = null, extra = {}) => ({
  ticket_id: id, status, resolve_due_at: resolve, accept_due_at: accept,
  created_at: '2026-11-26T08:00:00+00:00', ...extra,
});

test('the queue: earliest deadline first, the accept deadline for dispatched tickets', () => {
  const sorted = queueOrder([
    ticket('late', 'in_progress', '2026-11-26T18:00:00+00:00'),
    // Resolve due last of all, but it must be accepted within the hour.
    ticket('to-accept', 'dispatched', '2026-11-27T08:00:00+00:00', '2026-11-26T09:00:00+00:00'),
    // The same instant as 10:00Z written with another offset: compared as times, not text.
    ticket('early', 'accepted', '2026-11-26T17:30:00+08:00'),
    ticket('no-deadline', 'accepted', null),
    ticket('paused', 'returned', '2026-11-26T08:30:00+00:00'),
  ]);
  assert.deepEqual(sorted.map((t) => t.ticket_id),
    ['to-accept', 'early', 'late', 'no-deadline', 'paused']);
});

test('deadlines and countdowns', () => {
  const dispatched = ticket('a', 'dispatched', '2026-11-26T12:00:00Z', '2026-11-26T09:00:00Z');
  assert.deepEqual(deadlineOf(dispatched), { clock: 'accept', at: '2026-11-26T09:00:00Z', paused: false });
  assert.equal(deadlineOf({ ...dispatched, status: 'accepted' }).clock, 'resolve');
  assert.equal(deadlineOf(ticket('r', 'returned', '2026-11-26T12:00:00Z')).paused, true);

  const now = Date.parse('2026-11-26T08:47:30Z');
  assert.deepEqual(countdown(deadlineOf(dispatched), now), { text: '接单剩余 12分30秒', overdue: false });
  const late = countdown({ clock: 'resolve', at: '2026-11-26T07:42:00Z' }, now);
  assert.deepEqual(late, { text: '办结超时 1小时05分', overdue: true });
  assert.equal(countdown({ clock: 'resolve', at: null }, now).text, '无时限');
  assert.equal(duration(2 * 86_400_000 + 3 * 3_600_000 + 59_000), '2天3小时');
  assert.equal(duration(40_999), '40秒');
});

test('the buttons a status allows (lifecycle.py), per role', () => {
  assert.deepEqual(allowedActions('dispatched'), ['accept', 'reject', 'transfer', 'comment']);
  assert.deepEqual(allowedActions('accepted'),
    ['start', 'resolve', 'request-info', 'reject', 'transfer', 'comment']);
  assert.deepEqual(allowedActions('in_progress'), ['resolve', 'request-info', 'transfer', 'comment']);
  assert.deepEqual(allowedActions('returned'), ['provide-info', 'comment']);
  assert.deepEqual(allowedActions('resolved'), ['comment']);
  assert.deepEqual(allowedActions('merged'), []);
  // Only the department it was sent to rejects; the triage queue must transfer instead.
  assert.ok(!allowedActions('dispatched', { role: 'ops' }).includes('reject'));
  assert.ok(!allowedActions('dispatched', { triage: true }).includes('reject'));
});

test('action bodies: notes where required, a department for transfer, evidence URLs', () => {
  assert.deepEqual(actionBody('accept', 3), { body: { version: 3, note: '' } });
  assert.ok(actionBody('reject', 3, { note: '  ' }).error);
  assert.deepEqual(actionBody('reject', 3, { note: ' 不属于本部门 ' }),
    { body: { version: 3, note: '不属于本部门' } });
  assert.ok(actionBody('transfer', 3, { note: '水管', toDepartment: '' }).error);
  assert.ok(actionBody('transfer', 3, { note: '水管', toDepartment: 'water', currentDepartment: 'water' }).error);
  assert.deepEqual(actionBody('transfer', 3, { note: '水管', toDepartment: 'water' }),
    { body: { version: 3, note: '水管', to_department: 'water' } });
  assert.deepEqual(actionBody('resolve', 4, { evidence: 'https://a.example/1.jpg\n\nhttp://b.example/x?a=1,2' }),
    { body: { version: 4, note: '', evidence_urls: ['https://a.example/1.jpg', 'http://b.example/x?a=1,2'] } });
  assert.ok(actionBody('resolve', 4, { evidence: 'javascript:alert(1)' }).error);
  assert.deepEqual(parseEvidence('https://a.example，ftp://b.example、c'),
    { urls: ['https://a.example'], bad: ['ftp://b.example', 'c'] });
});

test('refusals, API details and actors read as text', () => {
  assert.match(refusalText(409, 'cannot accept a ticket that is accepted'), /已重新载入/);
  assert.equal(detailText('unknown or revoked API key'), 'unknown or revoked API key');
  assert.equal(detailText([{ loc: ['body', 'version'], msg: 'Field required' }]), 'version: Field required');
  assert.equal(actorText('department:water#12', new Map([['water', '水务局']])), '水务局');
  assert.equal(actorText('ops#1'), '指挥中心');
  assert.equal(actorText('system:router'), '系统');
});
