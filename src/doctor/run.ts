/** Gathers doctor's inputs (the only I/O: /proc files, a loopback self-check, the admin port) and diagnoses. */
import type { RouteConfig } from '../config/index.js';
import { SockoptUnsupportedError } from '../errors.js';
import { selfCheckSockopts } from '../sockopts/index.js';
import { probeAdmin } from './admin-probe.js';
import { diagnose } from './diagnose.js';
import type { DoctorReport } from './diagnose.js';
import { readKernelSettings } from './kernel.js';

export interface DoctorOptions {
  /** Root of the proc filesystem to read sysctls from (default /proc; tests pass a temp dir). */
  readonly procRoot: string;
  readonly routes: readonly RouteConfig[];
  readonly configSource: string;
  /** Admin base URL, and whether the user gave it (an unanswered explicit URL is a problem). */
  readonly adminUrl: string | undefined;
  readonly isAdminUrlExplicit: boolean;
  /** Debug base URL (loopback) for /debug/connections; defaults to the admin URL's host with debug.port. */
  readonly debugUrl: string | undefined;
}

/** Reads the sysctls, self-checks the routes' socket options, asks the admin URL (if any), and diagnoses. */
export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  const kernel = await readKernelSettings(opts.procRoot);
  let sockoptProblems: readonly string[] = [];
  try {
    await selfCheckSockopts(opts.routes.map((r) => ({ name: `routes.${r.name}.keepalive`, keepalive: r.keepalive })));
  } catch (err) {
    sockoptProblems = err instanceof SockoptUnsupportedError ? err.problems : [`self-check failed: ${(err as Error).message}`];
  }
  const admin = opts.adminUrl !== undefined ? await probeAdmin(opts.adminUrl, opts.debugUrl ?? opts.adminUrl, opts.isAdminUrlExplicit) : undefined;
  return diagnose({ procRoot: opts.procRoot, kernel, configSource: opts.configSource, routes: opts.routes, sockoptProblems, admin });
}
