// Source-address pools (src/source-pool.ts; SPEC `sourceAddresses`, issue 8 §5): round robin
// over the addresses, an address found full skipped until FULL_RETRY_MS have passed (clock
// injected), null when every address is full, and which addresses suit a backend's family.
import t from 'tap';
import { FULL_RETRY_MS, SourcePool, addressesFor } from '../../src/source-pool.js';

const A = '127.0.0.2';
const B = '127.0.0.3';
const C = '127.0.0.4';

/** A pool over `addresses` whose clock the test sets. */
function poolAt(addresses: readonly string[]): { pool: SourcePool; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  return { pool: new SourcePool(addresses, () => clock.now), clock };
}

const picks = (pool: SourcePool, n: number): Array<string | null> => Array.from({ length: n }, () => pool.pick());

t.test('round robin: each address in turn, in the order given, wrapping around', async (t) => {
  const { pool } = poolAt([A, B, C]);
  t.same(picks(pool, 7), [A, B, C, A, B, C, A]);
});

t.test('one address: always that one', async (t) => {
  const { pool } = poolAt([A]);
  t.same(picks(pool, 3), [A, A, A]);
});

t.test('an address found full is skipped; the others keep their turns', async (t) => {
  const { pool } = poolAt([A, B, C]);
  t.equal(pool.pick(), A);
  pool.full(B);
  t.same(picks(pool, 4), [C, A, C, A], 'B is passed over, the rotation goes on from where it was');
});

t.test('full() of the address just picked moves on to the next (the proxy retries the same backend)', async (t) => {
  const { pool } = poolAt([A, B, C]);
  const first = pool.pick();
  pool.full(first!);
  t.same(picks(pool, 3), [B, C, B]);
});

t.test('every address full: null, and null again until the clock moves', async (t) => {
  const { pool, clock } = poolAt([A, B, C]);
  pool.full(A);
  pool.full(B);
  pool.full(C);
  t.equal(pool.pick(), null);
  clock.now += FULL_RETRY_MS - 1;
  t.equal(pool.pick(), null, 'one millisecond before the retry time, still full');
});

t.test('a full address comes back exactly FULL_RETRY_MS after it was found full', async (t) => {
  const { pool, clock } = poolAt([A, B]);
  t.equal(pool.pick(), A);
  pool.full(B);
  clock.now += FULL_RETRY_MS - 1;
  t.same(picks(pool, 2), [A, A], 'B still skipped');
  clock.now += 1;
  t.same(picks(pool, 3), [B, A, B], 'B is back in the rotation');
});

t.test('marked full again while full: the retry time runs from the latest mark', async (t) => {
  const { pool, clock } = poolAt([A]);
  pool.full(A);
  clock.now += FULL_RETRY_MS / 2;
  pool.full(A);
  clock.now += FULL_RETRY_MS / 2;
  t.equal(pool.pick(), null);
  clock.now += FULL_RETRY_MS / 2;
  t.equal(pool.pick(), A);
});

t.test('full() of an address not in the pool changes nothing', async (t) => {
  const { pool } = poolAt([A, B]);
  pool.full('10.9.9.9');
  t.same(picks(pool, 4), [A, B, A, B]);
});

t.test('an empty pool picks null', async (t) => {
  const { pool } = poolAt([]);
  t.equal(pool.pick(), null);
});

const MIXED = ['10.0.1.1', '2001:db8::1', '10.0.1.2', 'fe80::1%eth0'];

t.test('addressesFor: an IPv4 backend gets the IPv4 addresses, in order', async (t) => {
  t.same(addressesFor('10.0.0.11', MIXED), ['10.0.1.1', '10.0.1.2']);
});

t.test('addressesFor: an IPv6 backend gets the IPv6 addresses (zone kept), in order', async (t) => {
  t.same(addressesFor('2001:db8::11', MIXED), ['2001:db8::1', 'fe80::1%eth0']);
  t.same(addressesFor('::1', MIXED), ['2001:db8::1', 'fe80::1%eth0']);
});

t.test('addressesFor: a host name keeps every address (its family is known only once resolved)', async (t) => {
  t.same(addressesFor('ws-d.ws.default.svc.cluster.local', MIXED), MIXED);
  t.same(addressesFor('localhost', MIXED), MIXED);
});

t.test('addressesFor: no address of the family gives an empty list (the kernel then chooses)', async (t) => {
  t.same(addressesFor('10.0.0.11', ['2001:db8::1']), []);
  t.same(addressesFor('2001:db8::11', ['10.0.1.1']), []);
  t.same(addressesFor('10.0.0.11', []), []);
});

t.test('addressesFor returns a copy: the pool never aliases the config array', async (t) => {
  const pool = ['10.0.1.1'];
  const got = addressesFor('backend.example', pool);
  t.not(got, pool);
  t.same(got, pool);
});
