/**
 * A picture of the QKD network as SVG: nodes (with the SAEs their key managers serve), links coloured by state
 * (green up, red compromised, grey down), each labelled with its fibre length, secret-key rate, QBER and pool
 * (with a fill bar), and the routes in use drawn over the links. Served at GET /network.svg and written by
 * `qkd-tls demo --network`.
 *
 * Runtime-neutral: a pure function of a {@link NetworkSnapshot}.
 */
import type { LinkSnapshot, NetworkSnapshot } from './network.js';

const WIDTH = 1000;
const HEIGHT = 560;
const MARGIN = 110;
const NODE_R = 30;
const COLORS: Record<LinkSnapshot['state'], string> = { up: '#2e8b57', compromised: '#d62728', down: '#9e9e9e' };

export function networkSvg(snap: NetworkSnapshot): string {
  const pos = layout(snap.nodes);
  const routed = new Set<string>();
  for (const r of snap.routes) for (let i = 1; i < r.path.length; i++) routed.add([r.path[i - 1], r.path[i]].sort().join('\u0000'));
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<title>QKD network at t = ${fmt(snap.timeS, 1)} s (simulated)</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="bold">QKD network, t = ${fmt(snap.timeS, 1)} s (simulated, ×${fmt(snap.timeScale, 0)})</text>`,
  );
  for (const l of snap.links) {
    const p = pos.get(l.a)!;
    const q = pos.get(l.b)!;
    const onRoute = routed.has([l.a, l.b].sort().join('\u0000'));
    const color = COLORS[l.state];
    out.push(`<g class="link" data-link="${esc(l.name)}" data-state="${l.state}">`);
    if (onRoute && l.state === 'up') {
      out.push(`<line x1="${p.x}" y1="${p.y}" x2="${q.x}" y2="${q.y}" stroke="#1f77b4" stroke-width="12" stroke-opacity="0.25"/>`);
    }
    out.push(`<line x1="${p.x}" y1="${p.y}" x2="${q.x}" y2="${q.y}" stroke="${color}" stroke-width="4"${l.state === 'down' ? ' stroke-dasharray="8 6"' : ''}/>`);
    const mx = (p.x + q.x) / 2;
    const my = (p.y + q.y) / 2;
    const fill = l.capacityBits > 0 ? l.poolBits / l.capacityBits : 0;
    const lines = [
      `${l.name} · ${fmt(l.km, 0)} km · ${l.state}`,
      l.state === 'down' ? 'fibre cut: no photons, no key' : `key ${rate(l.keyRateBps)} · QBER ${fmt(l.qber * 100, 1)}%${l.eavesdropping > 0 ? ` · Eve ${fmt(l.eavesdropping * 100, 0)}%` : ''}`,
      `pool ${bits(l.poolBits)} of ${bits(l.capacityBits)}`,
    ];
    const boxW = 190;
    const boxH = 58;
    out.push(`<rect x="${mx - boxW / 2}" y="${my - boxH / 2}" width="${boxW}" height="${boxH}" rx="6" fill="#ffffff" fill-opacity="0.92" stroke="${color}"/>`);
    lines.forEach((t, i) => {
      out.push(`<text x="${mx}" y="${my - boxH / 2 + 15 + i * 14}" text-anchor="middle"${i === 0 ? ' font-weight="bold"' : ''}>${esc(t)}</text>`);
    });
    const barW = boxW - 20;
    out.push(
      `<rect x="${mx - barW / 2}" y="${my + boxH / 2 - 9}" width="${barW}" height="5" fill="#e0e0e0"/>`,
      `<rect x="${mx - barW / 2}" y="${my + boxH / 2 - 9}" width="${fmt(barW * Math.min(1, fill), 1)}" height="5" fill="${color}"/>`,
      '</g>',
    );
  }
  for (const n of snap.nodes) {
    const p = pos.get(n.name)!;
    out.push(
      `<g class="node" data-node="${esc(n.name)}">`,
      `<circle cx="${p.x}" cy="${p.y}" r="${NODE_R}" fill="#f5f5f5" stroke="#333333" stroke-width="2"/>`,
      `<text x="${p.x}" y="${p.y + 5}" text-anchor="middle" font-size="15" font-weight="bold">${esc(n.name)}</text>`,
    );
    n.saes.forEach((s, i) => out.push(`<text x="${p.x}" y="${p.y + NODE_R + 16 + i * 14}" text-anchor="middle" fill="#555555">SAE ${esc(s)}</text>`));
    out.push('</g>');
  }
  const legendY = HEIGHT - 16;
  out.push(
    `<text x="16" y="${legendY}" fill="#555555">green: up · red: compromised (QBER above threshold) · grey dashed: cut · blue halo: route in use</text>`,
    '</svg>',
  );
  return out.join('\n') + '\n';
}

/** The topology's x/y when every node has them (scaled to the picture), else a circle. */
function layout(nodes: NetworkSnapshot['nodes']): Map<string, { x: number; y: number }> {
  const pos = new Map<string, { x: number; y: number }>();
  const placed = nodes.every((n) => n.x !== undefined && n.y !== undefined);
  if (placed && nodes.length > 1) {
    const xs = nodes.map((n) => n.x!);
    const ys = nodes.map((n) => n.y!);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const sx = x1 > x0 ? (WIDTH - 2 * MARGIN) / (x1 - x0) : 0;
    const sy = y1 > y0 ? (HEIGHT - 2 * MARGIN) / (y1 - y0) : 0;
    for (const n of nodes) {
      pos.set(n.name, { x: round(sx ? MARGIN + (n.x! - x0) * sx : WIDTH / 2), y: round(sy ? MARGIN + (n.y! - y0) * sy : HEIGHT / 2) });
    }
    return pos;
  }
  const cx = WIDTH / 2;
  const cy = HEIGHT / 2;
  const r = Math.min(WIDTH, HEIGHT) / 2 - MARGIN + 20;
  nodes.forEach((n, i) => {
    const a = Math.PI + (2 * Math.PI * i) / nodes.length;
    pos.set(n.name, nodes.length === 1 ? { x: cx, y: cy } : { x: round(cx + r * 1.5 * Math.cos(a)), y: round(cy + r * Math.sin(a)) });
  });
  return pos;
}

function rate(bps: number): string {
  if (bps >= 1e6) return `${fmt(bps / 1e6, 2)} Mbit/s`;
  if (bps >= 1e3) return `${fmt(bps / 1e3, 1)} kbit/s`;
  return `${fmt(bps, 0)} bit/s`;
}

function bits(n: number): string {
  if (n >= 1e6) return `${fmt(n / 1e6, 2)} Mbit`;
  if (n >= 1e3) return `${fmt(n / 1e3, 1)} kbit`;
  return `${n} bit`;
}

function fmt(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '∞';
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** XML text/attribute escaping. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}
