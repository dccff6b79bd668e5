// The deployment kit (issue 12 items 5 and 6): the Kubernetes manifests parse and line up
// (names, labels and selectors, ports, probes, the ConfigMap mount), the config they embed
// passes `ringlb check` and names the StatefulSet's pods, the probes answer on a real daemon
// started with that config, the Containerfile exposes the same ports, and the systemd unit
// passes `systemd-analyze verify` and keeps its promises about stop timeout and descriptors.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { validateConfig } from '../../src/config.js';
import { resolveMaxConnections } from '../../src/descriptors.js';
import { adminGet, BIN, backendEntry, runRinglb, spawnDaemon, startBackend, whoAnswers, writeConfig } from '../helpers/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const K8S = join(ROOT, 'deploy/kubernetes');
const NAMESPACE = 'ringlb';

type Labels = Record<string, string>;
interface ContainerPort {
  name: string;
  containerPort: number;
}
interface Probe {
  httpGet?: { path: string; port: string };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports: ContainerPort[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string }>;
}
interface PodTemplate {
  metadata: { labels: Labels };
  spec: {
    containers: Container[];
    terminationGracePeriodSeconds?: number;
    volumes?: Array<{ name: string; configMap?: { name: string } }>;
  };
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
  spec?: {
    replicas?: number;
    serviceName?: string;
    selector?: { matchLabels: Labels } & Labels;
    template?: PodTemplate;
    type?: string;
    clusterIP?: string;
    externalTrafficPolicy?: string;
    ports?: Array<{ name: string; port: number; targetPort: string | number }>;
    podMetricsEndpoints?: Array<{ port: string; path: string }>;
  };
  data?: Record<string, string>;
  resources?: string[];
}

/** Every document of every manifest file (kustomization.yaml is kubectl's, not an object), with its file. */
const manifests: Array<Manifest & { file: string }> = readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .sort()
  .flatMap((file) =>
    parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      return { ...(doc.toJS() as Manifest), file };
    }),
  );
const one = (kind: string, name: string): Manifest => {
  const found = manifests.filter((m) => m.kind === kind && m.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return found[0]!;
};
/** Whether `selector` selects pods labelled `labels` (every key equal). */
const selects = (selector: Labels, labels: Labels): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const deployment = one('Deployment', 'ringlb');
const podTemplate = deployment.spec!.template!;
const ringlb = podTemplate.spec.containers.find((c) => c.name === 'ringlb')!;
const portNamed = (name: string | number): number | undefined => ringlb.ports.find((p) => p.name === name)?.containerPort;
const configMap = one('ConfigMap', 'ringlb-config');
const configText = configMap.data!['config.json']!;
const config = validateConfig(JSON.parse(configText));
const statefulSet = one('StatefulSet', 'ws');
const headless = one('Service', 'ws');

t.test('every manifest is a named object in the ringlb namespace, and kustomization lists real files (issue 12 item 6)', async (t) => {
  for (const m of manifests) {
    t.ok(m.apiVersion && m.kind && m.metadata?.name, `${m.file}: ${m.kind}/${m.metadata?.name} has apiVersion, kind and name`);
    if (m.kind !== 'Namespace') t.equal(m.metadata.namespace, NAMESPACE, `${m.file}: ${m.kind}/${m.metadata.name} namespace`);
  }
  t.equal(one('Namespace', NAMESPACE).kind, 'Namespace');
  const kustomization = parseAllDocuments(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as Manifest;
  const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  // Everything but the PROXY v2 alternative to service.yaml.
  t.same([...kustomization.resources!].sort(), files.filter((f) => f !== 'service-proxy-v2.yaml').sort());
});

t.test('the ConfigMap config passes ringlb check and names the StatefulSet pods through the headless Service (issue 12 item 6)', async (t) => {
  const file = writeConfig(configText, 'config.json');
  t.teardown(() => rmSync(dirname(file), { recursive: true, force: true }));
  const check = await runRinglb(['check', '--json', '--config', file]);
  t.equal(check.code, 0, check.stderr);
  const report = JSON.parse(check.stdout) as { valid: boolean; backends: Array<{ id: string; address: string }> };
  t.equal(report.valid, true);

  const wsPort = statefulSet.spec!.template!.spec.containers[0]!.ports.find((p) => p.name === 'ws')!.containerPort;
  const pods = Array.from({ length: statefulSet.spec!.replicas! }, (_, i) => `${statefulSet.metadata.name}-${i}`);
  t.same(
    report.backends.map((b) => `${b.id} ${b.address}`),
    pods.map((pod) => `${pod} ${pod}.${headless.metadata.name}.${NAMESPACE}.svc.cluster.local:${wsPort}`),
    'one backend per pod: id = pod name, host = its stable DNS name, port = its container port',
  );
  t.equal(statefulSet.spec!.serviceName, headless.metadata.name, 'the StatefulSet governs its pod names with the headless Service');
  t.equal(headless.spec!.clusterIP, 'None', 'the Service is headless (per-pod DNS names)');
  t.ok(selects(headless.spec!.selector!, statefulSet.spec!.template!.metadata.labels), 'the headless Service selects the StatefulSet pods');
  t.ok(selects(statefulSet.spec!.selector!.matchLabels, statefulSet.spec!.template!.metadata.labels), 'the StatefulSet selects its own pods');
  t.same(headless.spec!.ports!.map((p) => [p.port, p.targetPort]), [[wsPort, 'ws']]);
});

t.test('the Deployment mounts the ConfigMap as a directory and its ports are the config listeners (issue 12 item 6)', async (t) => {
  t.ok(selects(deployment.spec!.selector!.matchLabels, podTemplate.metadata.labels), 'the Deployment selects its own pods');
  t.ok(deployment.spec!.replicas! >= 2, 'several replicas');

  const configArg = ringlb.args![ringlb.args!.indexOf('--config') + 1]!;
  t.same(ringlb.args, ['start', '--config', configArg]);
  const mount = ringlb.volumeMounts!.find((v) => v.mountPath === dirname(configArg))!;
  t.ok(mount, `a volume is mounted at ${dirname(configArg)}`);
  // A subPath mount is a copy the kubelet never updates: the watcher would never see a change.
  t.equal(mount.subPath, undefined, 'the whole directory, not a subPath');
  t.equal(podTemplate.spec.volumes!.find((v) => v.name === mount.name)!.configMap!.name, configMap.metadata.name);
  t.equal(configArg.slice(dirname(configArg).length + 1), 'config.json', 'the file is the ConfigMap key');

  t.same(
    config.listen.map((l) => ({ host: l.host, port: l.port, proxy: l.acceptProxy !== null })),
    [
      { host: '0.0.0.0', port: portNamed('ws'), proxy: false },
      { host: '0.0.0.0', port: portNamed('ws-proxy'), proxy: true },
    ],
    'port ws is the plain listener, ws-proxy the acceptProxy one, on every pod address',
  );
  // Probes and scrapes come from outside the pod: the admin endpoint must not be on loopback.
  t.same(config.metrics, { host: '0.0.0.0', port: portNamed('admin') });

  const grace = podTemplate.spec.terminationGracePeriodSeconds!;
  const pause = Number(ringlb.lifecycle!.preStop!.exec!.command.at(-1));
  t.ok(grace > config.shutdownTimeoutMs / 1000 + pause, `grace ${grace} s > shutdownTimeoutMs ${config.shutdownTimeoutMs} ms + preStop ${pause} s`);
});

t.test('the Services: LoadBalancer with externalTrafficPolicy Local on the plain listener, PROXY v2 alternative on acceptProxy (issue 12 item 6)', async (t) => {
  const local = one('Service', 'ringlb');
  t.equal(local.spec!.type, 'LoadBalancer');
  t.equal(local.spec!.externalTrafficPolicy, 'Local', 'the client address survives (no SNAT)');
  t.ok(selects(local.spec!.selector!, podTemplate.metadata.labels), 'selects the ringlb pods');
  t.same(local.spec!.ports!.map((p) => p.targetPort), ['ws']);

  const proxied = one('Service', 'ringlb-proxy');
  t.equal(proxied.spec!.type, 'LoadBalancer');
  t.ok(selects(proxied.spec!.selector!, podTemplate.metadata.labels), 'selects the ringlb pods');
  t.same(proxied.spec!.ports!.map((p) => p.targetPort), ['ws-proxy']);
  const listener = config.listen.find((l) => l.port === portNamed('ws-proxy'))!;
  t.ok(listener.acceptProxy !== null && listener.acceptProxy.length > 0, 'its target is a listener that requires a PROXY header');
});

t.test('the PodMonitor scrapes the admin port of the ringlb pods (issue 12 item 6)', async (t) => {
  const monitor = one('PodMonitor', 'ringlb');
  t.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
  t.ok(selects(monitor.spec!.selector!.matchLabels, podTemplate.metadata.labels), 'selects the ringlb pods');
  t.same(monitor.spec!.podMetricsEndpoints, [{ port: 'admin', path: '/metrics', interval: '15s' }]);
  t.ok(portNamed('admin'), 'the pods have a port named admin');
});

t.test('the probes answer on a daemon started with the ConfigMap config (issue 12 item 6)', async (t) => {
  // The same config with the listeners and admin endpoint moved to loopback port 0 and the
  // pods' names replaced by local backends that announce the pod name.
  const backends = await Promise.all(config.backends.map((b) => startBackend(t, b.id)));
  const raw = JSON.parse(configText) as Record<string, unknown>;
  const daemon = await spawnDaemon(t, {
    ...raw,
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    backends: backends.map((b) => backendEntry(b)),
  });
  const admin = `http://127.0.0.1:${daemon.adminPort}`;
  for (const [kind, probe] of [
    ['readiness', ringlb.readinessProbe],
    ['liveness', ringlb.livenessProbe],
  ] as const) {
    t.equal(probe!.httpGet!.port, 'admin', `${kind} probe on the admin port`);
    t.equal((await adminGet(`${admin}${probe!.httpGet!.path}`)).status, 200, `${kind} probe ${probe!.httpGet!.path} answers 200`);
  }
  t.equal(ringlb.readinessProbe!.httpGet!.path, '/healthz', 'readiness follows /healthz (503 with no backend up, or shutting down)');
  t.match(await whoAnswers(daemon.port, '127.0.0.1'), /^ws-\d$/, 'a client is served by one of the pods');
});

t.test('the Containerfile exposes the Deployment ports and runs the config the Deployment mounts (issue 12 item 6)', async (t) => {
  const file = readFileSync(join(ROOT, 'Containerfile'), 'utf8');
  const expose = /^EXPOSE (.+)$/m.exec(file)![1]!.split(/\s+/).map(Number);
  t.same(expose, ringlb.ports.map((p) => p.containerPort));
  t.match(file, /^USER 65532:65532$/m, 'runs as the user the pod security context names');
  const cmd = JSON.parse(/^CMD (.+)$/m.exec(file)![1]!) as string[];
  t.same(cmd, ringlb.args, 'its default command is the Deployment\'s');
});

const NO_SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version']).error ? 'systemd-analyze is not installed' : false;

t.test('the systemd unit verifies and keeps its promises (issue 12 item 5)', async (t) => {
  const unit = readFileSync(join(ROOT, 'deploy/systemd/ringlb.service'), 'utf8');
  const setting = (key: string): string[] =>
    [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
  t.same(setting('ExecReload'), ['/bin/kill -HUP $MAINPID']);
  const defaults = validateConfig({ listen: { host: '127.0.0.1', port: 1 }, backends: [] });
  t.ok(Number(setting('TimeoutStopSec')[0]) > defaults.shutdownTimeoutMs / 1000, 'TimeoutStopSec is above the default shutdownTimeoutMs');
  t.same(setting('KillMode'), ['mixed'], 'SIGTERM to the main process only');
  const nofile = Number(setting('LimitNOFILE')[0]);
  // The figure the unit's comment and docs/operations.md state for 3 backends.
  t.equal(resolveMaxConnections('auto', nofile, 3), 524254);
  t.match(unit, /524254/);
  for (const hardening of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'DynamicUser=yes', 'CapabilityBoundingSet=']) {
    t.ok(unit.split('\n').includes(hardening), hardening);
  }
  t.same(setting('AmbientCapabilities'), [], 'no capability unless uncommented for a port < 1024');
  t.same(
    setting('ExecStart').concat(setting('ExecStartPre')).map((line) => line.split(' ').slice(1, 4).join(' ')),
    ['start --config /etc/ringlb/config.json', 'check --config /etc/ringlb/config.json'],
  );
});

t.test('systemd-analyze verify reports nothing for the unit (issue 12 item 5)', { skip: NO_SYSTEMD_ANALYZE }, async (t) => {
  // The unit names the installed command; point it at this clone's so verify finds it.
  const dir = mkdtempSync(join(tmpdir(), 'ringlb-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const unit = readFileSync(join(ROOT, 'deploy/systemd/ringlb.service'), 'utf8').replaceAll('/usr/local/bin/ringlb', BIN);
  writeFileSync(join(dir, 'ringlb.service'), unit);
  const verify = spawnSync('systemd-analyze', ['verify', join(dir, 'ringlb.service')], { encoding: 'utf8', timeout: 20_000 });
  // verify exits 0 even for an unknown key or a bad value, so its output is the verdict.
  t.equal(verify.status, 0);
  t.equal(verify.stdout + verify.stderr, '', 'no warning');
});
