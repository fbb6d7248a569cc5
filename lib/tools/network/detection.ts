/**
 * BB84 detection events, one by one, drawn from the injected randomness: what a link actually sees when it
 * estimates its QBER by disclosing a sample of its sifted bits.
 *
 * Each event is one click at Bob. With probability `darkShare` it is a dark count (Bob's bit is a coin toss).
 * Otherwise Alice sent a random bit in a random basis; with probability `attackFraction` an intercept-resend
 * eavesdropper measured the pulse in her own random basis (a coin toss when it differs from Alice's) and
 * resent her result in her basis; Bob measures in a random basis, getting the sent bit (flipped with
 * probability `misalignment`) when his basis is the sender's, a coin toss otherwise. Sifting keeps the events
 * where Bob's basis is Alice's; an error is a kept bit that differs from Alice's. The expected QBER is that of
 * {@link ./physics.ts} (darkShare/2 + (1 − darkShare)·(e_d + p·(1/4 − e_d/2))).
 *
 * Runtime-neutral: the randomness is injected.
 */

export interface DetectionModel {
  /** Share of clicks that are dark counts (Y0 / Q_μ). */
  darkShare: number;
  /** e_d: probability that a photon measured in the right basis gives the wrong bit. */
  misalignment: number;
  /** Share of pulses the intercept-resend eavesdropper measures (0..1). */
  attackFraction: number;
}

export interface DetectionSample {
  /** Clicks simulated. */
  detections: number;
  /** Clicks kept by sifting (Bob's basis = Alice's). */
  sifted: number;
  /** Sifted bits that differ from Alice's. */
  errors: number;
}

/** Simulates `detections` clicks. Uses 16 random bytes per click (drawn in batches). */
export function simulateDetections(detections: number, model: DetectionModel, random: UniformSource): DetectionSample {
  let sifted = 0;
  let errors = 0;
  const { darkShare, misalignment, attackFraction } = model;
  for (let i = 0; i < detections; i++) {
    const uDark = random.unit();
    const uEve = random.unit();
    const uFlip = random.unit();
    const bits = random.uint32();
    const aliceBasis = bits & 1;
    const aliceBit = (bits >>> 1) & 1;
    const bobBasis = (bits >>> 2) & 1;
    const coin1 = (bits >>> 3) & 1;
    const coin2 = (bits >>> 4) & 1;
    const eveBasis = (bits >>> 5) & 1;
    if (bobBasis !== aliceBasis) continue; // sifted away: the bases differ
    sifted++;
    let bobBit: number;
    if (uDark < darkShare) {
      bobBit = coin1;
    } else {
      let sentBasis = aliceBasis;
      let sentBit = aliceBit;
      if (uEve < attackFraction) {
        // Eve measures in her basis: right basis, right bit; wrong basis, a coin toss. She resends that.
        sentBasis = eveBasis;
        sentBit = eveBasis === aliceBasis ? aliceBit : coin2;
      }
      bobBit = bobBasis === sentBasis ? sentBit ^ (uFlip < misalignment ? 1 : 0) : coin1;
    }
    if (bobBit !== aliceBit) errors++;
  }
  return { detections, sifted, errors };
}

/** Uniform numbers from an injected `randomBytes`, drawn 4 KiB at a time. */
export class UniformSource {
  private buf: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private at = 0;

  constructor(private readonly randomBytes: (n: number) => Uint8Array) {}

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    if (this.at + 4 > this.buf.length) {
      this.buf = this.randomBytes(4096);
      if (this.buf.length !== 4096) throw new Error('randomBytes returned the wrong length');
      this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      this.at = 0;
    }
    const v = this.view.getUint32(this.at);
    this.at += 4;
    return v;
  }

  /** A uniform number in [0, 1). */
  unit(): number {
    return this.uint32() / 4294967296;
  }
}
