/**
 * Reads the node's TCP sysctls from a /proc root (injectable, so tests use a temp dir). These are per network
 * namespace: inside a pod they are the pod's values, which is what the app's sockets get.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export interface KernelTcpSettings {
  /** net.ipv4.tcp_keepalive_time (s): idle time before the first probe, for sockets with SO_KEEPALIVE. */
  readonly keepaliveTimeSec: number;
  /** net.ipv4.tcp_keepalive_intvl (s). */
  readonly keepaliveIntvlSec: number;
  /** net.ipv4.tcp_keepalive_probes. */
  readonly keepaliveProbes: number;
  /** net.ipv4.tcp_retries2: retransmissions of unacknowledged data before the kernel gives up. */
  readonly retries2: number;
}

/** Linux defaults (include/net/tcp.h: TCP_KEEPALIVE_TIME, _INTVL, _PROBES; TCP_RETR2). */
export const KERNEL_DEFAULTS: KernelTcpSettings = { keepaliveTimeSec: 7200, keepaliveIntvlSec: 75, keepaliveProbes: 9, retries2: 15 };

export interface KernelReading {
  readonly settings: KernelTcpSettings;
  /** sysctl name -> whether it was read (true) or the Linux default was assumed (false). */
  readonly isRead: Readonly<Record<keyof KernelTcpSettings, boolean>>;
  readonly problems: readonly string[];
}

const FILES: Record<keyof KernelTcpSettings, string> = {
  keepaliveTimeSec: 'tcp_keepalive_time',
  keepaliveIntvlSec: 'tcp_keepalive_intvl',
  keepaliveProbes: 'tcp_keepalive_probes',
  retries2: 'tcp_retries2',
};

/** The sysctl file name of a setting (for messages). */
export function sysctlName(key: keyof KernelTcpSettings): string {
  return `net.ipv4.${FILES[key]}`;
}

/** Reads every setting; a missing or malformed one is a problem and the Linux default is assumed for it. */
export async function readKernelSettings(procRoot: string): Promise<KernelReading> {
  const problems: string[] = [];
  const settings: Record<keyof KernelTcpSettings, number> = { ...KERNEL_DEFAULTS };
  const isRead = { keepaliveTimeSec: false, keepaliveIntvlSec: false, keepaliveProbes: false, retries2: false };
  for (const key of Object.keys(FILES) as Array<keyof KernelTcpSettings>) {
    const file = path.join(procRoot, 'sys', 'net', 'ipv4', FILES[key]);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      problems.push(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); assuming the Linux default ${KERNEL_DEFAULTS[key]}`);
      continue;
    }
    const value = Number(text.trim());
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) {
      problems.push(`${file}: expected a whole number, got ${JSON.stringify(text.trim().slice(0, 40))}; assuming the Linux default ${KERNEL_DEFAULTS[key]}`);
      continue;
    }
    settings[key] = value;
    isRead[key] = true;
  }
  return { settings, isRead, problems };
}
