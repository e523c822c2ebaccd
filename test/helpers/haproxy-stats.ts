/**
 * HAProxy's statistics in its CSV form, as `show stat` on the stats socket and `<stats uri>;csv`
 * over HTTP both give it: a `# pxname,svname,...` header line, then one row per frontend, server
 * and backend.
 */
export type StatRow = Record<string, string>;

export function parseStatCsv(text: string): StatRow[] {
  const [header, ...rows] = text.split('\n').filter(Boolean);
  if (!header?.startsWith('# ')) throw new Error(`not HAProxy stats CSV: ${text.slice(0, 200)}`);
  const names = header.slice(2).split(',');
  return rows.map((row) => Object.fromEntries(row.split(',').map((v, i) => [names[i] ?? `c${i}`, v])));
}

export function serverRow(rows: StatRow[], proxy: string, server: string): StatRow {
  const row = rows.find((r) => r.pxname === proxy && r.svname === server);
  if (!row) throw new Error(`no stats row ${proxy}/${server}`);
  return row;
}

/** Rows of real servers (not the FRONTEND and BACKEND summary rows). */
export function serverRows(rows: StatRow[]): StatRow[] {
  return rows.filter((r) => r.svname !== 'FRONTEND' && r.svname !== 'BACKEND');
}
