// wrk and iperf3 clients: command lines and output parsers. Every run is bounded (-d / -t plus
// a kill timeout).

import { run } from './procs.mjs';

const UNITS = { us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const toMs = (text) => {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  return match ? Number(match[1]) * UNITS[match[2]] : null;
};

/** Parse `wrk --latency` output. */
export function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : null;
  };
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : null;
  };
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    perSecond: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    p50Ms: pct(50),
    p99Ms: pct(99),
    socketErrors: errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) ?? 0,
  };
}

/** Run wrk for `seconds` (whole seconds, ≥ 1) with `conns` connections on one thread. */
export async function wrk({ url, conns, seconds, close, cpus }) {
  const args = ['-t1', `-c${conns}`, `-d${seconds}s`, '--latency', '--timeout', '5s'];
  if (close) args.push('-H', 'Connection: close');
  args.push(url);
  const result = await run('wrk', 'wrk', args, { cpus, timeoutMs: seconds * 1000 + 15_000 });
  if (result.timedOut) throw new Error('wrk did not finish in time');
  const parsed = parseWrk(result.stdout);
  if (result.code !== 0 || parsed.perSecond === null) {
    throw new Error(`wrk failed (${result.code}): ${(result.stderr || result.stdout).trim().split('\n').slice(-2).join(' | ')}`);
  }
  return parsed;
}

/** Run an iperf3 client: `streams` parallel streams for `seconds` (whole seconds, ≥ 1). */
export async function iperf3({ port, streams, seconds, cpus }) {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-P', String(streams), '-t', String(seconds), '-J', '--connect-timeout', '3000'];
  const result = await run('iperf3', 'iperf3', args, { cpus, timeoutMs: seconds * 1000 + 15_000 });
  if (result.timedOut) throw new Error('iperf3 did not finish in time');
  let json;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    throw new Error(`iperf3 printed no JSON (${result.code}): ${result.stderr.trim().slice(0, 200)}`);
  }
  if (json.error || !json.end?.sum_received) throw new Error(`iperf3: ${json.error ?? 'no result'}`);
  const received = json.end.sum_received;
  return { bitsPerSecond: received.bits_per_second, bytes: received.bytes, seconds: received.seconds };
}
