import { isoTime } from '../../common/clock.ts';
import type { JournalEntry } from '../../store/records.ts';
import { connect, type ConnectOptions } from '../client.ts';
import { EXIT, type Output } from '../output.ts';

export interface EventsCommandOptions extends ConnectOptions {
  json: boolean;
  since: number;
  follow: boolean;
  /** Aborts a --follow stream (SIGINT by default). */
  signal?: AbortSignal;
}

/** Why an entry happened: a refusal's or transition's reason, or a deferral until the minimum runtime. */
function reasonOf(entry: JournalEntry): string {
  const reason = entry.detail.reason;
  if (typeof reason === 'string' && reason !== '') return reason;
  if (entry.kind === 'deferral') return 'deferred until min runtime';
  return entry.kind === 'refusal' ? 'refused' : '';
}

/** Columns that only ever widen, so a stream stays aligned without knowing what comes next. */
function lineFormatter(): (entry: JournalEntry) => string {
  const widths = [5, 24, 16, 24, 8];
  return (entry) => {
    const cells = [String(entry.seq), isoTime(entry.at), entry.instance_id, `${entry.from ?? '-'} -> ${entry.to ?? '-'}`, entry.event];
    cells.forEach((cell, i) => (widths[i] = Math.max(widths[i]!, cell.length)));
    const padded = cells.map((cell, i) => (i === 0 ? cell.padStart(widths[0]!) : cell.padEnd(widths[i]!)));
    return [...padded, reasonOf(entry)].join('  ').trimEnd();
  };
}

/**
 * `mvm-actors events [--since n] [--follow]`: the journal from seq n, one line per entry
 * (`seq  time  instance  from -> to  event  reason`), or with --json the API's messages one per
 * line. Without --follow it prints what happened up to now and exits; with --follow it keeps
 * streaming until Ctrl-C.
 */
export async function eventsCommand(options: EventsCommandOptions, output: Output): Promise<number> {
  const client = connect(options);
  const format = lineFormatter();
  let signal = options.signal;
  let cleanup = () => {};
  if (options.follow && !signal) {
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    cleanup = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    };
    signal = controller.signal;
  }
  try {
    await client.events({
      since: options.since,
      follow: options.follow,
      ...(signal && { signal }),
      onOpen: () => {
        if (options.follow) output.err(`following events of ${client.url} after seq ${options.since} (Ctrl-C to stop)`);
      },
      onMessage: (message) => {
        if (options.json) output.out(JSON.stringify(message));
        else if (message.type === 'journal') output.out(format(message.entry));
      },
    });
  } finally {
    cleanup();
  }
  return EXIT.ok;
}
