// `doctor`: reads the node's TCP sysctls (from an injectable /proc root), explains in plain words how long a
// dead peer goes unnoticed with and without the sidecar, self-checks the configured socket options, and
// lists a running sidecar's sockets. Read-only: it changes no sysctl and no running sidecar.
export { runDoctor } from './run.js';
export type { DoctorOptions } from './run.js';
export { diagnose } from './diagnose.js';
export type { AdminProbe, DoctorInput, DoctorReport } from './diagnose.js';
export { KERNEL_DEFAULTS, readKernelSettings } from './kernel.js';
export type { KernelReading, KernelTcpSettings } from './kernel.js';
