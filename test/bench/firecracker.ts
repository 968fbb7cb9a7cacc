/**
 * Firecracker driver benchmark (issue 6): the control plane's own time for the API sequences of
 * boot, sleep and wake, against the fake Firecracker API server (src/driver/firecracker/
 * api-sequences.ts, the functions the driver runs), p50 and p99 over `runs` each, next to
 * Firecracker's published figures: ~125 ms from InstanceStart to guest init (SPECIFICATION.md)
 * and a few ms for a snapshot load (p90 5 ms target, snapshot-support.md). The ratio says how much
 * the control plane adds on top of what Firecracker itself spends.
 *
 * The fake runs in this process over a real Unix socket, so each figure holds both ends of every
 * HTTP exchange; Firecracker's own work (loading a kernel, mapping memory) is not in it. Drive
 * image builds (mkfs.ext4 -d) are reported separately: they run before a boot or wake, and their
 * cost depends on the disk, not on the API.
 *
 *   npx tsx test/bench/firecracker.ts [--runs N]      # standalone; npm run bench may call benchFirecracker()
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { systemClock } from '../../src/common/clock.ts';
import { bootSequence, sleepSequence, wakeSequence } from '../../src/driver/firecracker/api-sequences.ts';
import { FirecrackerApiClient } from '../../src/firecracker/api-client.ts';
import { buildFilesImage, ensureDataImage } from '../../src/firecracker/drive-images.ts';
import { buildVmConfig } from '../../src/firecracker/vm-config.ts';
import { agentSpec } from '../firecracker/fake-harness.ts';
import { FakeFirecracker } from '../firecracker/fake-firecracker.ts';
import { FirecrackerSpec } from '../firecracker/firecracker-spec.ts';
import { type Distribution, distribution, fixed } from './report.ts';

/** Firecracker's published figures (docs: SPECIFICATION.md, snapshotting/snapshot-support.md). */
export const PUBLISHED_MS = { boot: 125, restore: 5 };

export async function benchFirecracker(options: { runs?: number } = {}): Promise<{ rows: { label: string; figure: string }[]; json: Record<string, number> }> {
  const runs = Math.max(50, options.runs ?? 100);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fcb-'));
  const spec = new FirecrackerSpec();
  try {
    const instance = agentSpec('bench-1');
    const kernel = path.join(dir, 'vmlinux');
    const rootfs = path.join(dir, 'rootfs.ext4');
    await writeFile(kernel, 'kernel');
    await writeFile(rootfs, 'rootfs');
    const drives = Object.fromEntries(instance.drives.map((d) => [d.name, path.join(dir, `${d.name}.ext4`)]));
    for (const file of Object.values(drives)) await writeFile(file, 'image');
    const config = buildVmConfig(instance, { kernel, initrd: null, rootfs, baseConfig: {} }, { drives, vsockUds: path.join(dir, 'v.sock') }, { gateway: '10.200.0.1', prefixLength: 24 });
    const deadline = () => ({ deadline: systemClock.now() + 10_000 });

    const boot: number[] = [];
    const sleep: number[] = [];
    const wake: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Boot: every call from machine-config to InstanceStart on a fresh process.
      const first = await FakeFirecracker.start({ apiSock: path.join(dir, `a${i}.sock`), guest: false }, spec);
      const client = new FirecrackerApiClient({ socketPath: first.apiSock, clock: systemClock });
      let t = performance.now();
      await bootSequence(client, config, deadline());
      boot.push(performance.now() - t);
      // Sleep: pause and a full snapshot (the fake writes a 256 MiB sparse memory file).
      const files = { snapshotPath: path.join(dir, `s${i}.vmstate`), memPath: path.join(dir, `s${i}.mem`) };
      t = performance.now();
      await sleepSequence(client, { ...files, type: 'Full' }, deadline());
      sleep.push(performance.now() - t);
      await first.close();
      // Wake: the snapshot loaded into a fresh process, resumed.
      const second = await FakeFirecracker.start({ apiSock: path.join(dir, `b${i}.sock`), guest: false }, spec);
      const fresh = new FirecrackerApiClient({ socketPath: second.apiSock, clock: systemClock });
      t = performance.now();
      await wakeSequence(fresh, { ...files, network: [{ iface_id: 'eth0', host_dev_name: instance.network.tap }], vsockUds: path.join(dir, 'v.sock'), trackDirtyPages: false }, deadline());
      wake.push(performance.now() - t);
      await second.close();
      await rm(files.snapshotPath, { force: true });
      await rm(files.memPath, { force: true });
    }

    // Drive images, as a boot builds them: config (one JSON file), secrets (a few small files), data (once per instance).
    const configImage: number[] = [];
    const secretsImage: number[] = [];
    const dataImage: number[] = [];
    const configFiles = instance.drives.find((d) => d.name === 'config')!.files;
    const secretFiles = { 'gateway-token': 'x'.repeat(64), 'telegram-bot-token': 'y'.repeat(46) };
    for (let i = 0; i < runs; i++) {
      let t = performance.now();
      await buildFilesImage({ path: path.join(dir, 'config-img.ext4'), label: 'mvm-config', files: configFiles, fileMode: 0o444 });
      configImage.push(performance.now() - t);
      t = performance.now();
      await buildFilesImage({ path: path.join(dir, 'secrets-img.ext4'), label: 'mvm-secrets', files: secretFiles, fileMode: 0o400 });
      secretsImage.push(performance.now() - t);
      t = performance.now();
      await ensureDataImage({ path: path.join(dir, `data-${i}.ext4`), label: 'mvm-data', sizeMib: 64 });
      dataImage.push(performance.now() - t);
      await rm(path.join(dir, `data-${i}.ext4`), { force: true });
    }

    const d = { boot: distribution(boot), sleep: distribution(sleep), wake: distribution(wake), configImage: distribution(configImage), secretsImage: distribution(secretsImage), dataImage: distribution(dataImage) };
    const ms = (x: Distribution) => `p50 ${fixed(x.p50, 2)} ms, p99 ${fixed(x.p99, 2)} ms`;
    const ratio = (x: number, published: number) => `${fixed((x / published) * 100, 1)}%`;
    const rows = [
      { label: `boot: API calls machine-config..InstanceStart (${runs} runs)`, figure: ms(d.boot) },
      { label: `  vs Firecracker's ~${PUBLISHED_MS.boot} ms boot (p50 / p99)`, figure: `${ratio(d.boot.p50, PUBLISHED_MS.boot)} / ${ratio(d.boot.p99, PUBLISHED_MS.boot)}` },
      { label: `sleep: pause + full snapshot (${runs} runs)`, figure: ms(d.sleep) },
      { label: `wake: snapshot load + resume (${runs} runs)`, figure: ms(d.wake) },
      { label: `  vs Firecracker's ~${PUBLISHED_MS.restore} ms snapshot load (p50 / p99)`, figure: `${ratio(d.wake.p50, PUBLISHED_MS.restore)} / ${ratio(d.wake.p99, PUBLISHED_MS.restore)}` },
      { label: 'image: config drive (mkfs.ext4 -d)', figure: ms(d.configImage) },
      { label: 'image: secrets drive (every boot and wake)', figure: ms(d.secretsImage) },
      { label: 'image: 64 MiB data drive (once per instance)', figure: ms(d.dataImage) },
    ];
    const json: Record<string, number> = {};
    for (const [name, x] of Object.entries(d)) {
      json[`firecracker_${name}_p50_ms`] = x.p50;
      json[`firecracker_${name}_p99_ms`] = x.p99;
    }
    json.firecracker_boot_ratio_p50 = d.boot.p50 / PUBLISHED_MS.boot;
    json.firecracker_wake_ratio_p50 = d.wake.p50 / PUBLISHED_MS.restore;
    json.firecracker_runs = runs;
    return { rows, json };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, json: { type: 'boolean', default: false } } });
  const result = await benchFirecracker(values.runs ? { runs: Number(values.runs) } : {});
  if (values.json) process.stdout.write(`${JSON.stringify(result.json, null, 2)}\n`);
  else for (const row of result.rows) process.stdout.write(`${row.label.padEnd(62)} ${row.figure}\n`);
}
