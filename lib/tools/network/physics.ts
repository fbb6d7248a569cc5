/**
 * The physics of one QKD link running BB84: how far apart the two ends are decides how many photons arrive,
 * how many of them become shared secret bits, and how many of those bits disagree (the QBER).
 *
 * For a newcomer: the sender ("Alice") emits very weak laser pulses, each encoding one random bit in one of
 * two random bases. The fibre loses most of them (0.2 dB per km). The receiver ("Bob") measures what arrives in
 * a random basis; both then keep only the detections where the bases agreed ("sifting", about half). Some of
 * the kept bits disagree: the quantum bit error rate (QBER), from optical misalignment, detector noise ("dark
 * counts") and from anyone who measured the photons on the way. Error correction reveals some bits to fix the
 * errors, privacy amplification shrinks the key to remove what an eavesdropper could know; what is left is the
 * secret key.
 *
 * The variant modelled is decoy-state BB84 with an infinite number of decoy intensities (so the single-photon
 * yield and error rate are known exactly), secured by the GLLP argument. The secret-key rate per pulse is
 *
 *     R = q · { Q1 · [1 − h(e1)] − Q_μ · f · h(E_μ) }                      (Ma et al. 2005, eq. (1) and (42))
 *
 * with, for a channel of overall transmittance η = 10^(−α·L/10) · η_Bob (eqs. (2)–(9) of the same paper):
 *
 *     Y0  = dark-count probability per pulse            e0 = 1/2 (a dark count is a coin toss)
 *     Q_μ = Y0 + 1 − e^(−ημ)                            gain of the signal state (mean photon number μ)
 *     E_μ = [e0·Y0 + e_d·(1 − e^(−ημ))] / Q_μ           its QBER (e_d: misalignment)
 *     Y1  = Y0 + η,   Q1 = Y1·μ·e^(−μ)                   yield and gain of the single-photon pulses
 *     e1  = (e0·Y0 + e_d·η) / Y1                        their error rate
 *     h(x) = −x·log2(x) − (1−x)·log2(1−x)              binary entropy; f: error-correction inefficiency
 *     q   = 1/2                                        the sifting factor of standard BB84
 *
 * Sources: H.-K. Lo, X. Ma, K. Chen, "Decoy State Quantum Key Distribution", Phys. Rev. Lett. 94, 230504 (2005);
 * X. Ma, B. Qi, Y. Zhao, H.-K. Lo, "Practical decoy state for quantum key distribution", Phys. Rev. A 72, 012326
 * (2005); D. Gottesman, H.-K. Lo, N. Lütkenhaus, J. Preskill (GLLP), Quantum Inf. Comput. 4, 325 (2004).
 * The default detector parameters are those of the GYS experiment that Ma et al. use (C. Gobby, Z. Yuan,
 * A. Shields, Appl. Phys. Lett. 84, 3762 (2004)): η_Bob 4.5 %, Y0 1.7·10⁻⁶, e_d 3.3 %, f 1.22, μ 0.48.
 *
 * An intercept-resend eavesdropper on a fraction p of the pulses measures each in a random basis and resends
 * what she saw. When she picks the wrong basis (half the time) Bob's sifted bit is a coin toss; so an
 * intercepted detection is wrong with probability 1/4 + E/2 and the QBER becomes E + p·(1/4 − E/2) — about
 * 25 %·p on a clean link (the textbook figure). The same applies to e1. This model assumes Eve resends pulses
 * so that Bob's detection rate is unchanged (she hides in the loss), so only the QBER betrays her.
 *
 * Runtime-neutral: pure functions, no clock, no randomness.
 */

/** Physical parameters of one link. Every field has a documented default ({@link DEFAULT_LINK_PHYSICS}). */
export interface LinkPhysics {
  /** Fibre length in km. */
  km: number;
  /** Fibre loss α in dB/km (default 0.2, standard telecom fibre at 1550 nm). */
  attenuationDbPerKm: number;
  /** η_Bob: Bob's optical transmittance times his detector efficiency (default 0.045, GYS). */
  detectorEfficiency: number;
  /** Y0: probability of a dark count (a click with no photon) per pulse (default 1.7e-6, GYS). */
  darkCountProbability: number;
  /** e_d: probability that a photon hits the wrong detector (default 0.033, GYS). */
  misalignment: number;
  /** Pulses per second Alice sends (default 1e8, a 100 MHz source). */
  pulseRateHz: number;
  /** μ: mean photon number of the signal pulses (default 0.48, optimal for GYS per Ma et al.). */
  meanPhotonNumber: number;
  /** f ≥ 1: how many more bits error correction reveals than the Shannon limit (default 1.22, GYS). */
  errorCorrectionEfficiency: number;
  /** q: the fraction of detections kept by sifting (default 0.5, standard BB84 with random bases). */
  siftingFactor: number;
}

/** The defaults (fibre length excepted). */
export const DEFAULT_LINK_PHYSICS: Readonly<Omit<LinkPhysics, 'km'>> = Object.freeze({
  attenuationDbPerKm: 0.2,
  detectorEfficiency: 0.045,
  darkCountProbability: 1.7e-6,
  misalignment: 0.033,
  pulseRateHz: 1e8,
  meanPhotonNumber: 0.48,
  errorCorrectionEfficiency: 1.22,
  siftingFactor: 0.5,
});

/** What the formulas give for a link (per pulse, and per second at the pulse rate). */
export interface LinkRates {
  /** η: overall transmittance from Alice's output to a click at Bob. */
  transmittance: number;
  /** Q_μ: probability that a pulse gives a detection. */
  gain: number;
  /** Q_μ × pulse rate: detections per second. */
  detectionRateHz: number;
  /** q × Q_μ × pulse rate: sifted bits per second. */
  siftedRateBps: number;
  /** E_μ: the QBER of the sifted key (with the eavesdropper's share). */
  qber: number;
  /** Q1 and e1: gain and error rate of the single-photon pulses. */
  singlePhotonGain: number;
  singlePhotonErrorRate: number;
  /** Y0 / Q_μ: the share of detections that are dark counts. */
  darkShare: number;
  /** R per pulse (0 when the formula goes negative: no secret key at this distance or QBER). */
  secretKeyRatePerPulse: number;
  /** R × pulse rate: secret bits per second after error correction and privacy amplification. */
  secretKeyRateBps: number;
}

/** Binary entropy h(x) in bits; h(0) = h(1) = 0. */
export function binaryEntropy(x: number): number {
  if (x <= 0 || x >= 1) return 0;
  return -x * Math.log2(x) - (1 - x) * Math.log2(1 - x);
}

/**
 * Decoy-state BB84 (infinite decoys, GLLP) rates of a link; `attackFraction` p is the share of pulses an
 * intercept-resend eavesdropper measures (0 = none).
 */
export function bb84Rates(physics: LinkPhysics, attackFraction = 0): LinkRates {
  checkPhysics(physics);
  const p = Math.min(1, Math.max(0, attackFraction));
  const { km, attenuationDbPerKm, detectorEfficiency, darkCountProbability: y0, misalignment: ed, meanPhotonNumber: mu } = physics;
  const eta = 10 ** ((-attenuationDbPerKm * km) / 10) * detectorEfficiency;
  const e0 = 0.5;
  const signal = 1 - Math.exp(-eta * mu);
  const gain = y0 + signal;
  // With no dark counts (Y0 = 0) and no photon arriving (η·μ below double precision: a very lossy fibre),
  // Q_μ = Y1 = 0 and E_μ, e1 are 0/0. Their limit as η → 0+ is e_d (every click is a photon, wrong with
  // probability e_d); NaN here would reach /network, the picture and the QBER estimate.
  const cleanQber = gain > 0 ? (e0 * y0 + ed * signal) / gain : ed;
  const y1 = y0 + eta;
  const q1 = y1 * mu * Math.exp(-mu);
  const cleanE1 = y1 > 0 ? (e0 * y0 + ed * eta) / y1 : ed;
  const qber = withInterceptResend(cleanQber, p);
  const e1 = withInterceptResend(cleanE1, p);
  const perPulse = physics.siftingFactor * (q1 * (1 - binaryEntropy(e1)) - gain * physics.errorCorrectionEfficiency * binaryEntropy(qber));
  const r = perPulse > 0 && e1 < 0.5 ? perPulse : 0;
  return {
    transmittance: eta,
    gain,
    detectionRateHz: gain * physics.pulseRateHz,
    siftedRateBps: physics.siftingFactor * gain * physics.pulseRateHz,
    qber,
    singlePhotonGain: q1,
    singlePhotonErrorRate: e1,
    darkShare: gain > 0 ? y0 / gain : 0,
    secretKeyRatePerPulse: r,
    secretKeyRateBps: r * physics.pulseRateHz,
  };
}

/** E → E + p·(1/4 − E/2): a share p of detections is wrong with probability 1/4 + E/2 (see the file comment). */
export function withInterceptResend(errorRate: number, p: number): number {
  return errorRate + p * (0.25 - errorRate / 2);
}

/** The full parameter set of a link: the defaults overridden by what is given. */
export function linkPhysics(km: number, overrides: Partial<Omit<LinkPhysics, 'km'>> = {}): LinkPhysics {
  const physics: LinkPhysics = { ...DEFAULT_LINK_PHYSICS, ...definedOnly(overrides), km };
  checkPhysics(physics);
  return physics;
}

/** The range of each physical parameter: from lo (excluded when openLo) to hi. */
const PHYSICS_RANGES: Readonly<Record<keyof LinkPhysics, readonly [lo: number, hi: number, openLo?: boolean]>> = {
  km: [0, 100_000],
  attenuationDbPerKm: [0, 100],
  detectorEfficiency: [0, 1, true],
  darkCountProbability: [0, 0.5],
  misalignment: [0, 0.5],
  pulseRateHz: [0, 1e12, true],
  meanPhotonNumber: [0, 10, true],
  errorCorrectionEfficiency: [1, 10],
  siftingFactor: [0, 1, true],
};

/** Why `v` cannot be the physical parameter `name` ("must be a number in (0, 1] (got 5)"), or undefined. */
export function physicsParameterProblem(name: keyof LinkPhysics, v: unknown): string | undefined {
  const [lo, hi, openLo = false] = PHYSICS_RANGES[name];
  if (typeof v !== 'number' || !Number.isFinite(v) || v > hi || (openLo ? v <= lo : v < lo)) {
    return `must be a number in ${openLo ? '(' : '['}${lo}, ${hi}] (got ${String(v)})`;
  }
  return undefined;
}

/** Throws a RangeError naming the first parameter out of range. */
export function checkPhysics(p: LinkPhysics): void {
  for (const name of Object.keys(PHYSICS_RANGES) as (keyof LinkPhysics)[]) {
    const problem = physicsParameterProblem(name, p[name]);
    if (problem) throw new RangeError(`link parameter ${name} ${problem}`);
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
