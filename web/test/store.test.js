import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Store } from '../src/store.js';

const put = (layer, key, value) => ({ layer, key, value });

test('a snapshot replaces the subscribed layers, even those it has nothing for', () => {
  const store = new Store();
  store.applySnapshot({ stream: 's1', seq: 5, updates: [put('alarms', 'a', { alarm_id: 'a' })] });
  store.applySnapshot({ stream: 's1', seq: 9, updates: [put('h3', '7:x', { res: 7 })] }, ['alarms', 'h3']);
  assert.equal(store.get('alarms').size, 0);
  assert.deepEqual([...store.get('h3').keys()], ['7:x']);
  assert.equal(store.seq, 9);
  assert.equal(store.stream, 's1');
});

test('a delta sets and deletes keys and moves the cursor', () => {
  const store = new Store();
  store.applySnapshot({ stream: 's', seq: 1, updates: [put('sla', 'water', { open: 1 })] });
  const before = store.versions.sla;
  store.applyDelta({ stream: 's', from: 1, seq: 3, updates: [put('sla', 'water', null),
    put('sla', 'housing', { open: 2 })] });
  assert.deepEqual([...store.get('sla').entries()], [['housing', { open: 2 }]]);
  assert.equal(store.seq, 3);
  assert.ok(store.versions.sla > before);
  assert.equal(store.counts().sla, 1);
});

test('a layer the page does not know yet is kept, not dropped', () => {
  const store = new Store();
  store.applyDelta({ stream: 's', from: 0, seq: 1, updates: [put('weather', 'k', { v: 1 })] });
  assert.equal(store.get('weather').size, 1);
});
