// The proxies under test and the C origins: how to find them, their versions, their configs
// (written into the run's temp dir, never /etc) and how to start them. Each proxy instance
// serves one listen port in front of two backends on 127.0.0.1.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, waitListening, stop } from './procs.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** First line of a command's output (stdout, else stderr: nginx -v), or null if it cannot run. */
function versionOf(command, args) {
  const result = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 5000 });
  if (result.error) return null;
  const text = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.trim();
  return text ? text.split('\n')[0].trim() : null;
}

/** `name version` from a version banner, or the banner itself if the pattern misses. */
const tidy = (line, pattern, name) => {
  if (line === null) return null;
  const match = pattern.exec(line);
  return match ? `${name} ${match[1]}` : line;
};

const NGINX_STREAM_MODULES = [
  '/usr/lib/nginx/modules/ngx_stream_module.so',
  '/usr/share/nginx/modules/ngx_stream_module.so',
  '/usr/lib64/nginx/modules/ngx_stream_module.so',
];

/** What is installed: versions (null = missing) and notes on anything missing. */
export function detect({ ringlbCmd }) {
  const found = {
    node: process.version,
    ringlb: null,
    haproxy: tidy(versionOf('haproxy', ['-v']), /HAProxy version (\S+)/, 'HAProxy'),
    nginx: tidy(versionOf('nginx', ['-v']), /nginx\/(\S+)/, 'nginx'),
    nginxStreamModule: null,
    wrk: tidy(versionOf('wrk', ['-v']), /^wrk (\S+)/, 'wrk'),
    iperf3: tidy(versionOf('iperf3', ['-v']), /^iperf (\S+)/, 'iperf3'),
    taskset: versionOf('taskset', ['--version']),
    notes: [],
  };
  const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
  let commit = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=no', 'src'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dirty) commit += ' (src modified)';
  } catch {
    // not a git checkout
  }
  const usesDefault = ringlbCmd.join(' ') === DEFAULT_RINGLB_CMD.join(' ');
  if (usesDefault && !fs.existsSync(path.join(repo, 'dist', 'cli.js'))) {
    found.notes.push('ringlb skipped: dist/cli.js missing (run `npx tsc -p tsconfig.json`, or use `npm run bench`)');
  } else if (usesDefault) {
    found.ringlb = `ringlb ${pkg.version}${commit ? ` @ ${commit}` : ''}`;
  } else {
    const [command, ...prefix] = ringlbCmd;
    const version = versionOf(command, [...prefix, '--version']);
    if (version === null) found.notes.push(`ringlb skipped: \`${ringlbCmd.join(' ')} --version\` does not run`);
    else found.ringlb = `ringlb ${version} (${ringlbCmd.join(' ')})`;
  }
  if (found.haproxy === null) found.notes.push('haproxy skipped: not installed');
  if (found.nginx !== null) {
    found.nginxStreamModule = NGINX_STREAM_MODULES.find((p) => fs.existsSync(p)) ?? null;
    if (found.nginxStreamModule === null) {
      let builtIn = false;
      try {
        builtIn = /--with-stream(\s|$)/.test(execFileSync('nginx', ['-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
      } catch (err) {
        builtIn = /--with-stream(\s|$)/.test(String(err.stderr ?? ''));
      }
      if (!builtIn) found.notes.push('nginx skipped: the stream module (libnginx-mod-stream) is not installed');
      else found.nginxStreamModule = 'built-in';
    }
  } else found.notes.push('nginx skipped: not installed (HTTP origin falls back to node:http)');
  if (found.wrk === null) found.notes.push('wrk not installed: HTTP figures use the harness\'s Node client');
  if (found.iperf3 === null) found.notes.push('iperf3 not installed: bulk figures use the harness\'s Node source and sink');
  if (found.taskset === null) found.notes.push('taskset not found: running unpinned');
  return found;
}

export const DEFAULT_RINGLB_CMD = [process.execPath, path.join(repo, 'bin', 'ringlb')];

/** Deep merge of plain objects (extra config keys over the harness's ringlb config). */
function merge(base, extra) {
  const out = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object' ? merge(base[k], v) : v;
  }
  return out;
}

/**
 * Start one proxy instance listening on 127.0.0.1:`port` in front of 127.0.0.1:`backends`.
 * With `failover`, HAProxy redispatches and checks its servers (ringlb's checks come from
 * `opts.ringlbConfig`; nginx's passive failover and the naive proxy's next-backend try are on
 * anyway).
 * Resolves {child, pid, stopIt()} once the port listens; throws (after stopping it) if it
 * does not start within 10 s.
 */
export async function startPeer(name, { port, backends, dir, pinned, opts, found, adminPort, tag, failover = false, logLevel = 'warn' }) {
  const cpus = pinned ? '0' : null;
  const log = path.join(dir, `${name}-${tag}.log`);
  let child;
  if (name === 'ringlb') {
    const config = merge(
      {
        listen: { host: '127.0.0.1', port },
        backends: backends.map((p, i) => ({ id: `b${i + 1}`, host: '127.0.0.1', port: p })),
        healthCheck: { type: 'none' },
        shutdownTimeoutMs: 200, // stopped after each figure: no need to wait for stragglers
        metrics: { host: '127.0.0.1', port: adminPort },
      },
      opts.ringlbConfig,
    );
    const file = path.join(dir, `ringlb-${tag}.json`);
    fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
    const [command, ...prefix] = opts.ringlbCmd;
    child = start('ringlb', command, [...prefix, 'start', '--config', file, '--log-level', logLevel], { log, cpus, cwd: repo });
  } else if (name === 'haproxy') {
    const file = path.join(dir, `haproxy-${tag}.cfg`);
    fs.writeFileSync(
      file,
      [
        'global',
        // maxconn 9000 keeps HAProxy's socket need (2 per connection) under the 20,000 fd limit.
        '  maxconn 9000',
        `  nbthread ${pinned ? 1 : 2}`,
        'defaults',
        '  mode tcp',
        '  timeout connect 3s',
        '  timeout client 1h',
        '  timeout server 1h',
        '  maxconn 9000',
        'frontend fe',
        `  bind 127.0.0.1:${port}`,
        '  default_backend be',
        'backend be',
        '  balance source',
        '  hash-type consistent',
        // failover (the reconnect storm): another server on a failed connect, and health checks
        // as ringlb gets them there, so a dead server leaves the hash soon.
        ...(failover ? ['  option redispatch 1', '  retries 2'] : []),
        ...backends.map((p, i) => `  server b${i + 1} 127.0.0.1:${p}${failover ? ' check inter 1s fall 1 rise 2' : ''}`),
        '',
      ].join('\n'),
    );
    child = start('haproxy', 'haproxy', ['-db', '-f', file], { log, cpus });
  } else if (name === 'nginx') {
    const workers = pinned ? 1 : 2;
    const file = path.join(dir, `nginx-${tag}.conf`);
    const prefix = path.join(dir, `nginx-${tag}`);
    fs.mkdirSync(prefix, { recursive: true });
    fs.writeFileSync(
      file,
      [
        found.nginxStreamModule === 'built-in' ? '' : `load_module ${found.nginxStreamModule};`,
        `worker_processes ${workers};`,
        'daemon off;',
        workers === 1 ? 'master_process off;' : '',
        `pid ${prefix}/nginx.pid;`,
        `error_log ${prefix}/error.log warn;`,
        'worker_rlimit_nofile 20000;',
        'events { worker_connections 19000; }',
        'stream {',
        '  upstream be {',
        '    hash $remote_addr consistent;',
        ...backends.map((p) => `    server 127.0.0.1:${p};`),
        '  }',
        '  server {',
        `    listen 127.0.0.1:${port};`,
        '    proxy_pass be;',
        '    proxy_connect_timeout 3s;',
        '    proxy_timeout 1h;',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    child = start('nginx', 'nginx', ['-p', prefix, '-e', `${prefix}/error.log`, '-c', file], { log, cpus });
  } else if (name === 'naive') {
    const script = path.join(repo, 'bench', 'harness', 'naive-proxy.mjs');
    child = start('naive', process.execPath, [script, JSON.stringify({ port, backends })], { log, cpus });
  } else throw new Error(`unknown peer ${name}`);
  try {
    await waitListening(child, [port], 10_000, name);
  } catch (err) {
    await stop(child);
    let tail = '';
    try {
      tail = fs.readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      // no log
    }
    throw new Error(`${err.message}${tail ? `: ${tail}` : ''}`);
  }
  return { child, pid: child.pid, stopIt: () => stop(child, 1500) };
}

/** nginx as the HTTP origin: two servers answering "ok\n", one worker, on the load core. */
export async function startNginxOrigin({ ports, dir, pinned }) {
  const prefix = path.join(dir, 'origin');
  fs.mkdirSync(prefix, { recursive: true });
  const file = path.join(prefix, 'origin.conf');
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/${t};`);
  fs.writeFileSync(
    file,
    [
      'worker_processes 1;',
      'daemon off;',
      'master_process off;',
      `pid ${prefix}/nginx.pid;`,
      `error_log ${prefix}/error.log warn;`,
      'worker_rlimit_nofile 20000;',
      'events { worker_connections 16000; }',
      'http {',
      '  access_log off;',
      '  keepalive_requests 100000000;',
      '  keepalive_timeout 1h;',
      ...temp,
      '  default_type text/plain;',
      ...ports.map((p) => `  server { listen 127.0.0.1:${p} backlog=4096; location / { return 200 "ok\\n"; } }`),
      '}',
      '',
    ].join('\n'),
  );
  const child = start('nginx-origin', 'nginx', ['-p', prefix, '-e', `${prefix}/error.log`, '-c', file], {
    log: path.join(prefix, 'stdout.log'),
    cpus: pinned ? '1' : null,
  });
  await waitListening(child, ports, 10_000, 'nginx origin');
  return child;
}

/** Two iperf3 servers (one per backend port) on the load core. */
export async function startIperfServers({ ports, dir, pinned }) {
  const children = ports.map((p) =>
    start('iperf3-server', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(p)], {
      log: path.join(dir, `iperf3-${p}.log`),
      cpus: pinned ? '1' : null,
    }),
  );
  try {
    await Promise.all(children.map((c, i) => waitListening(c, [ports[i]], 10_000, 'iperf3 server')));
  } catch (err) {
    await Promise.all(children.map((c) => stop(c)));
    throw err;
  }
  return children;
}
