/**
 * The physics of the QKD network simulator: decoy-state BB84 rates against the formula's curve (and the
 * published figures for the GYS parameters), and the QBER that detection-by-detection simulation measures
 * under an intercept-resend attack, within statistical bounds of 25 %·p.
 */
import t from 'tap';
import {
  bb84Rates,
  binaryEntropy,
  DEFAULT_LINK_PHYSICS,
  linkPhysics,
  parseTopology,
  QkdNetwork,
  simulateDetections,
  UniformSource,
} from '../lib/tools/network/index.js';
import { seededBytes } from './helpers/seeded-bytes.js';

/** Ma, Qi, Zhao, Lo, PRA 72 012326 (2005), eqs. (1)-(9) with infinite decoys, written out independently. */
function maEtAlRate(km: number, alpha: number, etaBob: number, y0: number, ed: number, mu: number, f: number): number {
  const eta = Math.pow(10, (-alpha * km) / 10) * etaBob;
  const qmu = y0 + 1 - Math.exp(-eta * mu);
  const emu = (0.5 * y0 + ed * (1 - Math.exp(-eta * mu))) / qmu;
  const y1 = y0 + eta;
  const q1 = y1 * mu * Math.exp(-mu);
  const e1 = (0.5 * y0 + ed * eta) / y1;
  const h = (x: number) => -x * Math.log2(x) - (1 - x) * Math.log2(1 - x);
  return Math.max(0, 0.5 * (q1 * (1 - h(e1)) - qmu * f * h(emu)));
}

t.test('the defaults are the documented ones (GYS detector, 0.2 dB/km fibre)', async (t) => {
  t.same(DEFAULT_LINK_PHYSICS, {
    attenuationDbPerKm: 0.2,
    detectorEfficiency: 0.045,
    darkCountProbability: 1.7e-6,
    misalignment: 0.033,
    pulseRateHz: 1e8,
    meanPhotonNumber: 0.48,
    errorCorrectionEfficiency: 1.22,
    siftingFactor: 0.5,
  });
  t.equal(binaryEntropy(0.5), 1);
  t.equal(binaryEntropy(0), 0);
  t.ok(Math.abs(binaryEntropy(0.11) - 0.4999) < 1e-3, 'h(11%) is about 1/2: the QBER threshold of BB84');
});

t.test('key rate against distance follows the decoy-state formula curve', async (t) => {
  const d = DEFAULT_LINK_PHYSICS;
  let previous = Infinity;
  for (let km = 0; km <= 160; km += 5) {
    const r = bb84Rates(linkPhysics(km));
    const expected = maEtAlRate(km, d.attenuationDbPerKm, d.detectorEfficiency, d.darkCountProbability, d.misalignment, d.meanPhotonNumber, d.errorCorrectionEfficiency);
    t.ok(Math.abs(r.secretKeyRatePerPulse - expected) <= 1e-12 + 1e-9 * expected, `${km} km: R = ${r.secretKeyRatePerPulse.toExponential(4)} per pulse`);
    t.equal(r.secretKeyRateBps, r.secretKeyRatePerPulse * d.pulseRateHz);
    t.ok(r.secretKeyRateBps <= previous, `${km} km: the rate does not grow with distance`);
    t.ok(r.siftedRateBps >= r.secretKeyRateBps, 'sifted >= secret');
    previous = r.secretKeyRateBps;
  }
  // Ma et al. (2005), GYS parameters (alpha 0.21 dB/km), infinite decoys: key up to about 142 km.
  const cutoff = (alpha: number) => {
    let lo = 0;
    let hi = 300;
    for (let i = 0; i < 50; i++) {
      const m = (lo + hi) / 2;
      if (bb84Rates(linkPhysics(m, { attenuationDbPerKm: alpha })).secretKeyRatePerPulse > 0) lo = m;
      else hi = m;
    }
    return lo;
  };
  t.ok(Math.abs(cutoff(0.21) - 142) < 1, `GYS cutoff ${cutoff(0.21).toFixed(1)} km, as published (142 km)`);
  t.ok(Math.abs(cutoff(0.2) - 149) < 1, `cutoff at 0.2 dB/km: ${cutoff(0.2).toFixed(1)} km`);
  t.ok(bb84Rates(linkPhysics(50)).secretKeyRateBps > 10_000, 'tens of kbit/s at 50 km at 100 MHz');
});

t.test('intercept-resend raises the formula QBER by p(1/4 - E/2), i.e. about 25%·p', async (t) => {
  for (const p of [0, 0.1, 0.5, 1]) {
    const ideal = bb84Rates(linkPhysics(10, { darkCountProbability: 0, misalignment: 0 }), p);
    t.ok(Math.abs(ideal.qber - 0.25 * p) < 1e-12, `ideal link, p=${p}: QBER ${ideal.qber}`);
    const real = bb84Rates(linkPhysics(10), p);
    const clean = bb84Rates(linkPhysics(10), 0);
    t.ok(Math.abs(real.qber - (clean.qber + p * (0.25 - clean.qber / 2))) < 1e-12);
  }
  t.equal(bb84Rates(linkPhysics(10), 1).secretKeyRateBps, 0, 'no secret key under a full attack');
  t.ok(bb84Rates(linkPhysics(10), 0.2).secretKeyRateBps < bb84Rates(linkPhysics(10), 0).secretKeyRateBps, 'a partial attack costs key');
});

t.test('simulated detections: QBER within statistical bounds of 25%·p (seeded)', async (t) => {
  const random = new UniformSource(seededBytes(17));
  const N = 200_000;
  for (const p of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
    const s = simulateDetections(N, { darkShare: 0, misalignment: 0, attackFraction: p }, random);
    const siftedShare = s.sifted / N;
    t.ok(Math.abs(siftedShare - 0.5) < 5 * Math.sqrt(0.25 / N), `p=${p}: sifting keeps half (${siftedShare.toFixed(4)})`);
    const qber = s.errors / s.sifted;
    const expected = 0.25 * p;
    const sigma = Math.sqrt((expected * (1 - expected)) / s.sifted);
    if (p === 0) t.equal(s.errors, 0, 'no attack, ideal link: no error at all');
    else t.ok(Math.abs(qber - expected) < 5 * sigma, `p=${p}: QBER ${(qber * 100).toFixed(2)}% vs ${(expected * 100).toFixed(1)}% (5 sigma = ${(5 * sigma * 100).toFixed(2)}%)`);
  }
  // With dark counts and misalignment, the simulation agrees with the formula.
  for (const km of [20, 120]) {
    for (const p of [0, 0.5]) {
      const r = bb84Rates(linkPhysics(km), p);
      const s = simulateDetections(N, { darkShare: r.darkShare, misalignment: DEFAULT_LINK_PHYSICS.misalignment, attackFraction: p }, random);
      const qber = s.errors / s.sifted;
      const sigma = Math.sqrt((r.qber * (1 - r.qber)) / s.sifted);
      t.ok(Math.abs(qber - r.qber) < 5 * sigma, `${km} km, p=${p}: simulated ${(qber * 100).toFixed(2)}% vs formula ${(r.qber * 100).toFixed(2)}%`);
    }
  }
});

t.test('a link fills its pool at the formula rate and measures its QBER; an eavesdropper makes it stop', async (t) => {
  let now = 0;
  const events: string[] = [];
  const net = new QkdNetwork({
    topology: parseTopology({
      nodes: [{ name: 'A', saes: ['a'] }, { name: 'B', saes: ['b'] }],
      links: [{ a: 'A', b: 'B', km: 50, capacityBits: 8_000_000 }],
      eavesdroppers: [{ link: 'B-A', fraction: 0.4, from_s: 20 }],
    }),
    now: () => now,
    randomBytes: seededBytes(5),
    onEvent: (e) => e.type === 'link-state' && events.push(`${e.from}->${e.to}`),
  });
  const rate = bb84Rates(linkPhysics(50)).secretKeyRateBps;
  now = 19_900; // 19.9 s: 99 blocks of 0.2 s, all before the eavesdropper
  let l = net.snapshot().links[0];
  t.equal(l.state, 'up');
  t.ok(Math.abs(l.producedBits - rate * 19.8) <= 8, `produced ${l.producedBits} bits in 19.8 s at ${rate.toFixed(0)} bit/s`);
  t.equal(l.poolBits, l.producedBits);
  const sigma = Math.sqrt((l.expectedQber * (1 - l.expectedQber)) / 1800);
  t.ok(Math.abs(l.qber - l.expectedQber) < 5 * sigma, `measured QBER ${(l.qber * 100).toFixed(2)}% vs ${(l.expectedQber * 100).toFixed(2)}%`);
  now = 21_000;
  l = net.snapshot().links[0];
  t.equal(l.state, 'compromised', 'p = 0.4 pushes the QBER over 11%');
  t.ok(l.qber > 0.11, `QBER ${(l.qber * 100).toFixed(1)}%`);
  t.equal(l.keyRateBps, 0);
  t.ok(l.discardedSiftedBits > 0, 'the unconfirmed key was discarded');
  t.equal(l.eavesdropping, 0.4);
  t.same(events, ['up->compromised']);
  const poolAtAttack = l.poolBits;
  now = 40_000;
  t.equal(net.snapshot().links[0].poolBits, poolAtAttack, 'no key is added while compromised');
  net.removeEavesdroppers('A-B');
  now = 41_400;
  t.equal(net.snapshot().links[0].state, 'up', 'the link serves again once its QBER is back below threshold');
  t.same(events, ['up->compromised', 'compromised->up']);
  // A long idle stretch is summarised, not simulated block by block.
  now = 10 * 86_400_000;
  l = net.snapshot().links[0];
  t.equal(l.poolBits, 8_000_000, 'the pool is full after ten idle days');
  net.destroy();
});

t.test('a time scale makes simulated seconds pass faster', async (t) => {
  let now = 0;
  const topology = parseTopology({ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 50, capacityBits: 8_000_000 }] });
  const fast = new QkdNetwork({ topology, now: () => now, randomBytes: seededBytes(8), timeScale: 10 });
  const slow = new QkdNetwork({ topology, now: () => now, randomBytes: seededBytes(9) });
  now = 4_100; // 4.1 real seconds
  t.equal(fast.timeS, 41);
  t.equal(slow.timeS, 4.1);
  const rate = bb84Rates(linkPhysics(50)).secretKeyRateBps;
  const f = fast.snapshot().links[0];
  const s = slow.snapshot().links[0];
  t.ok(Math.abs(f.producedBits - rate * 40) <= 8, `×10: 20 blocks of 2 simulated seconds, ${f.producedBits} bits`);
  t.ok(Math.abs(s.producedBits - rate * 4) <= 8, `×1: 20 blocks of 0.2 s, ${s.producedBits} bits`);
  t.equal(f.blocks, s.blocks, 'the same number of blocks (the same CPU) per real second');
  t.throws(() => new QkdNetwork({ topology, now: () => 0, randomBytes: seededBytes(1), timeScale: 0 }), /timeScale/);
});

t.test('physical parameters are checked', async (t) => {
  t.throws(() => linkPhysics(-1), /km/);
  t.throws(() => linkPhysics(10, { detectorEfficiency: 0 }), /detectorEfficiency/);
  t.throws(() => linkPhysics(10, { misalignment: 0.7 }), /misalignment/);
  t.throws(() => linkPhysics(10, { errorCorrectionEfficiency: 0.9 }), /errorCorrectionEfficiency/);
});

t.test('no NaN or Infinity at the edges: no dark counts over a fibre so lossy that no photon arrives', async (t) => {
  const cases: [number, Parameters<typeof linkPhysics>[1]][] = [
    [0, {}],
    [100_000, {}],
    [100_000, { attenuationDbPerKm: 100 }],
    [900, { darkCountProbability: 0 }], // 1 - e^(-ημ) rounds to 0 although η > 0
    [20_000, { darkCountProbability: 0 }], // η itself underflows to 0
    [100_000, { darkCountProbability: 0, misalignment: 0, attenuationDbPerKm: 100 }],
    [0, { darkCountProbability: 0.5, detectorEfficiency: 1, meanPhotonNumber: 10 }],
  ];
  for (const [km, o] of cases) {
    for (const p of [0, 0.5, 1]) {
      const r = bb84Rates(linkPhysics(km, o), p);
      for (const [name, v] of Object.entries(r)) t.ok(Number.isFinite(v), `${km} km ${JSON.stringify(o)} p=${p}: ${name} = ${v}`);
      t.ok(r.qber >= 0 && r.qber <= 0.5, `QBER ${r.qber} in [0, 1/2]`);
      t.ok(r.secretKeyRateBps >= 0, 'no negative key rate');
    }
  }
  const dark = bb84Rates(linkPhysics(20_000, { darkCountProbability: 0 }), 1);
  t.equal(dark.secretKeyRateBps, 0, 'no key without photons');
  t.ok(Math.abs(dark.qber - (0.033 + 0.25 - 0.033 / 2)) < 1e-12, 'the QBER is the limit as η -> 0: e_d, plus the eavesdropper\'s share');
  const net = new QkdNetwork({
    topology: parseTopology({ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 20_000, darkCountProbability: 0 }] }),
    now: () => 0,
    randomBytes: seededBytes(7),
  });
  const link = net.snapshot().links[0];
  t.ok(Number.isFinite(link.qber) && Number.isFinite(link.expectedQber), `/network reports a QBER (${link.qber}), not null`);
  net.destroy();
});

t.test('a catch-up ends even when blocks are too short for floating point to advance them', async (t) => {
  let ms = 0;
  const net = new QkdNetwork({
    topology: parseTopology({ nodes: [{ name: 'A' }, { name: 'B' }], links: [{ a: 'A', b: 'B', km: 10 }] }),
    now: () => ms,
    randomBytes: seededBytes(3),
    blockSeconds: 1e-20, // accepted (> 0); 1 s later, blockEnd + 1e-20 === blockEnd
    samplesPerBlock: 10,
  });
  ms = 1000;
  const link = net.snapshot().links[0];
  t.ok(link.poolBits > 0, `the pool filled (${link.poolBits} bits) and advance() returned`);
  ms = 2000;
  t.ok(net.snapshot().links[0].poolBits >= link.poolBits, 'and it keeps working');
  net.destroy();
});
