// Types for the devDependency parse-prometheus-text-format (it ships none). Only what the tests use.
declare module 'parse-prometheus-text-format' {
  export interface ParsedFamily {
    readonly name: string;
    readonly help: string;
    readonly type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
    readonly metrics: ReadonlyArray<{ readonly value?: string; readonly labels?: Readonly<Record<string, string>> }>;
  }
  /** Throws on a malformed line. */
  export default function parsePrometheusTextFormat(text: string): ParsedFamily[];
}
