/**
 * A dependency-free SVG chart of a benchmark report: one diverging bar per row, on a logarithmic axis
 * centred on 1x, showing how many times better (right) or worse (left) qkd-tls did than the reference.
 * For memory, where less is better, the bar shows reference / qkd so that right still means better.
 */
import type { BenchReport, BenchRow } from './run.js';

const COLORS: Readonly<Record<string, string>> = { node: '#2b6cb0', noble: '#dd6b20' };
const ROW_HEIGHT = 18;
const LABEL_WIDTH = 430;
const PLOT_WIDTH = 420;
const VALUE_WIDTH = 70;
const MIN_ADVANTAGE = 1 / 64;
const MAX_ADVANTAGE = 8;

/** How many times better than the reference (> 1 is better), whatever the direction of the metric. */
export function advantage(r: BenchRow): number {
  return r.higherIsBetter ? r.ratio : 1 / r.ratio;
}

export function renderChart(report: BenchReport): string {
  const rows = report.rows;
  const top = 56;
  const height = top + rows.length * ROW_HEIGHT + 40;
  const width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH + 20;
  const lo = Math.log(MIN_ADVANTAGE);
  const hi = Math.log(MAX_ADVANTAGE);
  const x = (v: number) => LABEL_WIDTH + ((Math.log(Math.min(Math.max(v, MIN_ADVANTAGE), MAX_ADVANTAGE)) - lo) / (hi - lo)) * PLOT_WIDTH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="18" font-size="14" font-weight="bold">qkd-tls compared with node:tls (and with the raw AEAD for record rows)</text>`,
    `<text x="10" y="34" fill="#555">${esc(`${report.machine.cpu}, ${report.machine.cores} cores, Node ${report.machine.node}, OpenSSL ${report.machine.openssl}, ${report.mode} run`)}</text>`,
    `<text x="10" y="48" fill="#555">bars: times better than the reference (log scale; right of 1x = qkd-tls ahead). blue: native provider, orange: noble</text>`,
  );
  for (const tick of [1 / 64, 1 / 16, 1 / 4, 1 / 2, 1, 2, 4, 8]) {
    const tx = x(tick);
    out.push(`<line x1="${tx.toFixed(1)}" y1="${top - 4}" x2="${tx.toFixed(1)}" y2="${top + rows.length * ROW_HEIGHT}" stroke="${tick === 1 ? '#000' : '#ddd'}" stroke-width="${tick === 1 ? 1.5 : 1}"/>`);
    const label = tick >= 1 ? `${tick}x` : `1/${Math.round(1 / tick)}x`;
    out.push(`<text x="${tx.toFixed(1)}" y="${top + rows.length * ROW_HEIGHT + 14}" text-anchor="middle" fill="#333">${label}</text>`);
  }
  rows.forEach((r, i) => {
    const y = top + i * ROW_HEIGHT;
    const a = advantage(r);
    const x0 = x(1);
    const x1 = x(a);
    const color = COLORS[r.provider] ?? '#666';
    out.push(`<text x="${LABEL_WIDTH - 6}" y="${y + 12}" text-anchor="end">${esc(`${r.section}: ${r.metric} (${r.provider})`)}</text>`);
    out.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y + 3}" width="${Math.max(Math.abs(x1 - x0), 1).toFixed(1)}" height="${ROW_HEIGHT - 6}" fill="${color}" opacity="${a >= 1 ? 1 : 0.55}"/>`);
    out.push(`<text x="${LABEL_WIDTH + PLOT_WIDTH + 6}" y="${y + 12}">${esc(formatAdvantage(a))}</text>`);
  });
  out.push(`<text x="${LABEL_WIDTH + PLOT_WIDTH / 2}" y="${height - 8}" text-anchor="middle" fill="#333">times better than the reference</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function formatAdvantage(a: number): string {
  return a >= 10 ? `${a.toFixed(0)}x` : `${a.toFixed(2)}x`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
