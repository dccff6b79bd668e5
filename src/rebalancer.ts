// Disruption control: which open connections are misplaced, rehoming them, and spreading every
// bulk close ringlb makes itself (a removed backend's drain deadline, onDown "close", the
// shutdown deadline). The decisions are pure (routing.ts homeOf, planner.ts planCloses); this
// module reads the registry and the table in force and hands plans to the closer.
//
// A connection is misplaced when its home (where the routing decision would place its client
// now, health, drain and bounded load included) is another backend, whatever made it so: a
// reload or discovery change, a backend coming back up, a spill whose home has room again.
// With rebalance.rehome, each change schedules the connections it newly misplaced, evenly
// paced over rebalance.windowMs from the change, in random order; each is checked again when
// its turn comes and spared if it is home again. Connections on their home are never touched,
// nor those of a draining backend (drain keeps open connections until they close).

import type { Logger } from 'pino';
import { executePlan, type Clock, type Closing } from './closer.js';
import type { ConnectionRegistry, Pair } from './connections.js';
import { loadBound, type RoutingTable, type Upstream } from './fleet.js';
import type { CloseCause, Metrics } from './metrics.js';
import { planCloses } from './planner.js';
import { homeOf, type LoadBound } from './routing.js';

/** With bounded loads, closes may give a spilled connection's home room: look this often. */
export const CAPACITY_RECHECK_MS = 1000;

export interface RebalancerDeps {
  readonly connections: ConnectionRegistry;
  readonly table: () => RoutingTable;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: () => number;
}

export class Rebalancer {
  /** Pairs a rehoming plan will look at; each pair is in at most one plan. */
  private readonly scheduled = new Set<Pair>();
  private readonly closings = new Set<Closing>();
  private capacityTimer: { unref(): unknown } | null = null;

  constructor(private readonly deps: RebalancerDeps) {
    deps.metrics.beforeMisplacedScrape = () => this.publishMisplaced();
  }

  /** Open connections not on their home, by the backend they are on. */
  misplacedByUpstream(table = this.deps.table()): Map<Upstream, number> {
    const counts = new Map<Upstream, number>();
    const check = misplacedTest(table);
    this.deps.connections.forEachPair((pair) => {
      if (check(pair)) counts.set(pair.upstream, (counts.get(pair.upstream) ?? 0) + 1);
    });
    return counts;
  }

  /** The routing table changed (a reload, discovery, a backend up or down): rehome if asked to. */
  changed(why: string): void {
    const table = this.deps.table();
    if (!table.config.rebalance.rehome) return;
    const check = misplacedTest(table);
    const moving: Pair[] = [];
    this.deps.connections.forEachPair((pair) => {
      if (!this.scheduled.has(pair) && movable(pair) && check(pair)) moving.push(pair);
    });
    if (moving.length === 0) return;
    const { windowMs } = table.config.rebalance;
    for (const pair of moving) this.scheduled.add(pair);
    this.deps.logger.info({ why, misplaced: moving.length, windowMs }, 'rehoming misplaced connections');
    const plan = planCloses(moving, this.deps.clock.now(), windowMs, this.deps.random);
    // Spared at its turn when it is home again (or rehoming was turned off meanwhile).
    const spare = (pair: Pair): boolean => {
      this.scheduled.delete(pair);
      const now = this.deps.table();
      return !now.config.rebalance.rehome || !movable(pair) || !misplacedTest(now)(pair);
    };
    this.run(plan, 'rehome', spare);
  }

  /**
   * A connection ended. With bounded loads its backend has room now, which can make spilled
   * connections misplaced: look again soon (once per CAPACITY_RECHECK_MS at most).
   */
  pairEnded(): void {
    const { config } = this.deps.table();
    if (this.capacityTimer !== null || config.hashing.balanceFactor === null || !config.rebalance.rehome) return;
    this.capacityTimer = this.deps.clock.setTimeout(() => {
      this.capacityTimer = null;
      this.changed('capacity');
    }, CAPACITY_RECHECK_MS);
    this.capacityTimer.unref();
  }

  /** Close the open connections of `upstream` for `cause`, spread over closeSpreadMs. */
  closeUpstream(upstream: Upstream, cause: CloseCause, spare?: (pair: Pair) => boolean): number {
    const pairs = this.deps.connections.pairs().filter((p) => p.upstream === upstream);
    const { closeSpreadMs } = this.deps.table().config.rebalance;
    this.run(planCloses(pairs, this.deps.clock.now(), closeSpreadMs, this.deps.random), cause, spare);
    return pairs.length;
  }

  /** Close every open connection for `cause`, spread over the next `spreadMs`, the last at its end. */
  closeAllOver(spreadMs: number, cause: CloseCause): void {
    const pairs = this.deps.connections.pairs();
    this.run(planCloses(pairs, this.deps.clock.now(), spreadMs, this.deps.random, true), cause);
  }

  /** Carry out every plan's remaining closes now (a second shutdown signal). */
  finishNow(): void {
    for (const c of [...this.closings]) c.finishNow();
  }

  /** Stop every plan and timer (the daemon is closing). */
  stop(): void {
    for (const c of [...this.closings]) c.cancel();
    if (this.capacityTimer !== null) this.deps.clock.clearTimeout(this.capacityTimer);
    this.capacityTimer = null;
  }

  private run(plan: ReturnType<typeof planCloses<Pair>>, cause: CloseCause, spare?: (pair: Pair) => boolean): void {
    // A plan whose closes are all due now finishes inside executePlan, before it returns.
    let closing: Closing | null = null;
    closing = executePlan(plan, cause, this.deps.clock, spare, () => {
      if (closing !== null) this.closings.delete(closing);
    });
    if (closing.pending > 0) this.closings.add(closing);
  }

  private publishMisplaced(): void {
    const table = this.deps.table();
    const counts = this.misplacedByUpstream(table);
    const gauge = this.deps.metrics.misplacedConnections;
    gauge.reset();
    for (const u of table.upstreams) gauge.set({ backend: u.config.id }, counts.get(u) ?? 0);
  }
}

/**
 * Rehoming may move this pair: not when its backend is draining, whose open connections stay
 * until they close (SPEC `drain`); they count as misplaced all the same.
 */
const movable = (pair: Pair): boolean => !pair.upstream.config.drain;

/** A test of whether a pair is misplaced under `table` (one load snapshot for all pairs). */
function misplacedTest(table: RoutingTable): (pair: Pair) => boolean {
  const bound: LoadBound | null = loadBound(table);
  const index = new Map<Upstream, number>();
  table.upstreams.forEach((u, i) => index.set(u, i));
  return (pair) => {
    const on = index.get(pair.upstream) ?? -1; // -1: a removed backend, never anyone's home
    const home = homeOf(table.balancer, pair.hash, table.eligible, bound, on);
    return home !== on;
  };
}
