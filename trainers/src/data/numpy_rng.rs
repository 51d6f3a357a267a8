//! numpy's random streams, bit for bit, for the draws LLaMA-Factory and HF datasets make:
//! `np.random.default_rng(seed)` (SeedSequence → PCG64) with `permutation(n)`
//! (`train_test_split`) and `choice(k, p=...)` (`interleave_datasets` with probabilities), and
//! the legacy global state that `transformers.set_seed` seeds (`np.random.seed`, MT19937) with
//! `permutation(n)` and `choice(n, size)` (`num_samples`), and `integers` / `shuffle` for the
//! streaming shuffle buffer ([`super::stream`]). Matching them makes lmf's validation split,
//! weighted interleaving, sampling and streaming order pick the same rows as LLaMA-Factory.
//! Checked against numpy 2.4 by `tests/fixtures/hf/data/make_encoded.py` (`numpy` section, and
//! the cases) and `make_stream_order.py` (`numpy` section).

const MULT_A: u32 = 0x931e_8875;
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_B: u32 = 0x58f3_8ded;
const INIT_B: u32 = 0x8b51_f9dd;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// PCG64's 128-bit LCG multiplier.
const PCG_MULT: u128 = (2_549_297_995_355_413_924u128 << 64) | 4_865_540_595_714_422_341u128;

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

/// numpy `SeedSequence(seed).generate_state(n_words, np.uint64)`.
fn seed_sequence_u64(seed: u64, n_words: usize) -> Vec<u64> {
    // the integer seed as little-endian 32-bit words (at least one)
    let mut entropy = vec![seed as u32];
    if seed >> 32 != 0 {
        entropy.push((seed >> 32) as u32);
    }
    let mut pool = [0u32; POOL_SIZE];
    let mut hc = INIT_A;
    for (i, slot) in pool.iter_mut().enumerate() {
        *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hc);
    }
    for src in 0..POOL_SIZE {
        for dst in 0..POOL_SIZE {
            if src != dst {
                let h = hashmix(pool[src], &mut hc);
                pool[dst] = mix(pool[dst], h);
            }
        }
    }
    for &e in entropy.iter().skip(POOL_SIZE) {
        for slot in pool.iter_mut() {
            let h = hashmix(e, &mut hc);
            *slot = mix(*slot, h);
        }
    }
    let mut hc = INIT_B;
    let words: Vec<u32> = (0..n_words * 2)
        .map(|i| {
            let mut v = pool[i % POOL_SIZE] ^ hc;
            hc = hc.wrapping_mul(MULT_B);
            v = v.wrapping_mul(hc);
            v ^ (v >> XSHIFT)
        })
        .collect();
    words
        .chunks(2)
        .map(|w| w[0] as u64 | ((w[1] as u64) << 32))
        .collect()
}

/// numpy's `Generator(PCG64(SeedSequence(seed)))`.
#[derive(Clone, Debug)]
pub struct NumpyRng {
    state: u128,
    inc: u128,
    /// The upper half of the last 64-bit draw, kept for the next 32-bit draw (numpy's buffer).
    spare32: Option<u32>,
}

impl NumpyRng {
    /// `np.random.default_rng(seed)`.
    pub fn new(seed: u64) -> NumpyRng {
        let v = seed_sequence_u64(seed, 4);
        let initstate = ((v[0] as u128) << 64) | v[1] as u128;
        let initseq = ((v[2] as u128) << 64) | v[3] as u128;
        let mut rng = NumpyRng {
            state: 0,
            inc: (initseq << 1) | 1,
            spare32: None,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(initstate);
        rng.step();
        rng
    }

    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }

    /// `next_uint64` (PCG XSL-RR output of the stepped state).
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        let x = ((s >> 64) as u64) ^ (s as u64);
        x.rotate_right((s >> 122) as u32)
    }

    /// `next_uint32`: halves of one 64-bit draw, low half first.
    pub fn next_u32(&mut self) -> u32 {
        if let Some(v) = self.spare32.take() {
            return v;
        }
        let next = self.next_u64();
        self.spare32 = Some((next >> 32) as u32);
        next as u32
    }

    /// `Generator.random()`: a double in [0, 1).
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `Generator.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        permutation(self, n)
    }

    /// `Generator.integers(low, high, size)` (int64, `high` excluded): `size` uniform draws in
    /// `low..high`, as [`NumpyRng::integers_closed`] over `low..=high - 1`. Panics unless
    /// `low < high`.
    pub fn integers(&mut self, low: i64, high: i64, size: usize) -> Vec<i64> {
        assert!(low < high, "integers: low >= high");
        self.integers_closed(low, high - 1, size)
    }

    /// `Generator.integers(low, high, size, endpoint=True)` (int64): `size` uniform draws in
    /// `low..=high` by Lemire's bounded method (numpy's default `use_masked=False`): one 32-bit
    /// draw per try while `high - low` fits in 32 bits (a single 32-bit draw, no rejection, when
    /// it is exactly `u32::MAX`), one 64-bit draw per try otherwise; no draw at all when
    /// `low == high`. `integers(0, 1 << 63)` is `integers_closed(0, i64::MAX, 1)`. Panics unless
    /// `low <= high`.
    pub fn integers_closed(&mut self, low: i64, high: i64, size: usize) -> Vec<i64> {
        assert!(low <= high, "integers: low > high");
        let range = high.wrapping_sub(low) as u64;
        (0..size)
            .map(|_| low.wrapping_add(bounded(self, range) as i64))
            .collect()
    }

    /// `Generator.shuffle(list)`: Fisher–Yates from the end, `j = random_interval(i)` swapped
    /// with `i` for `i = len-1 .. 1` (the same draws as [`NumpyRng::permutation`]).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = interval(self, i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// One draw of `Generator.choice(len(p), p=p)`: the first index whose normalised cumulative
    /// probability exceeds a uniform double (`searchsorted(side="right")`).
    pub fn choice(&mut self, cdf: &[f64]) -> usize {
        let u = self.random();
        cdf.partition_point(|&c| c <= u)
            .min(cdf.len().saturating_sub(1))
    }
}

/// numpy's normalised cumulative sum of `p` (`cdf = p.cumsum(); cdf /= cdf[-1]`).
pub fn cdf(p: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    let mut c: Vec<f64> = p
        .iter()
        .map(|x| {
            acc += x;
            acc
        })
        .collect();
    if let Some(&last) = c.last() {
        c.iter_mut().for_each(|x| *x /= last);
    }
    c
}

/// The two draws numpy's bounded-integer code takes from a bit generator.
trait Bits {
    fn next32(&mut self) -> u32;
    fn next64(&mut self) -> u64;
}

impl Bits for NumpyRng {
    fn next32(&mut self) -> u32 {
        self.next_u32()
    }
    fn next64(&mut self) -> u64 {
        self.next_u64()
    }
}

impl Bits for LegacyRng {
    fn next32(&mut self) -> u32 {
        self.next_u32()
    }
    fn next64(&mut self) -> u64 {
        self.next_u64()
    }
}

/// numpy's `random_interval(max)`: uniform in `0..=max` by masked rejection (32-bit draws
/// while `max` fits in 32 bits).
fn interval(rng: &mut impl Bits, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mut mask = max;
    for s in [1, 2, 4, 8, 16, 32] {
        mask |= mask >> s;
    }
    loop {
        let v = if max <= 0xffff_ffff {
            rng.next32() as u64 & mask
        } else {
            rng.next64() & mask
        };
        if v <= max {
            return v;
        }
    }
}

/// numpy's `random_bounded_uint64_fill` for one value, without masking: uniform in `0..=range`
/// by Lemire's multiply-and-reject (`buffered_bounded_lemire_uint32` while `range` fits in 32
/// bits, `bounded_lemire_uint64` otherwise).
fn bounded(rng: &mut impl Bits, range: u64) -> u64 {
    if range == 0 {
        0
    } else if range == u32::MAX as u64 {
        rng.next32() as u64
    } else if range < u32::MAX as u64 {
        let excl = range as u32 + 1;
        let mut m = rng.next32() as u64 * excl as u64;
        if (m as u32) < excl {
            let threshold = (u32::MAX - range as u32) % excl;
            while (m as u32) < threshold {
                m = rng.next32() as u64 * excl as u64;
            }
        }
        m >> 32
    } else if range == u64::MAX {
        rng.next64()
    } else {
        let excl = range + 1;
        let mut m = rng.next64() as u128 * excl as u128;
        if (m as u64) < excl {
            let threshold = (u64::MAX - range) % excl;
            while (m as u64) < threshold {
                m = rng.next64() as u128 * excl as u128;
            }
        }
        (m >> 64) as u64
    }
}

/// numpy's shuffle of `arange(n)` (`_shuffle_raw`: Fisher–Yates from the end).
fn permutation(rng: &mut impl Bits, n: usize) -> Vec<usize> {
    let mut a: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = interval(rng, i as u64) as usize;
        a.swap(i, j);
    }
    a
}

/// numpy's legacy global state after `np.random.seed(seed)` (MT19937), as `transformers.set_seed`
/// leaves it for LLaMA-Factory's `num_samples` draws.
#[derive(Clone, Debug)]
pub struct LegacyRng {
    mt: Box<[u32; 624]>,
    index: usize,
}

impl LegacyRng {
    /// `np.random.seed(seed)` (seeds above 2^32 - 1 are refused by numpy; lmf keeps the low bits).
    pub fn new(seed: u64) -> LegacyRng {
        let mut mt = Box::new([0u32; 624]);
        mt[0] = seed as u32;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        LegacyRng { mt, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.index = 0;
    }

    /// Two 32-bit draws, the first as the high half (numpy's `(uint64)next32 << 32 | next32`,
    /// torch's `random64`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }

    /// `genrand_int32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `np.random.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        permutation(self, n)
    }

    /// The generator's state (`np.random.get_state()`'s key and position), to save.
    pub fn state(&self) -> (Vec<u32>, usize) {
        (self.mt.to_vec(), self.index)
    }

    /// A generator restored from [`LegacyRng::state`]; `None` when the key is not 624 words
    /// or the position is past it.
    pub fn from_state(key: &[u32], index: usize) -> Option<LegacyRng> {
        let mt: Box<[u32; 624]> = key.to_vec().into_boxed_slice().try_into().ok()?;
        (index <= 624).then_some(LegacyRng { mt, index })
    }

    /// `np.random.choice(n, size)` (with replacement, no weights: legacy masked `randint`).
    pub fn choice(&mut self, n: usize, size: usize) -> Vec<usize> {
        let max = n.saturating_sub(1) as u64;
        (0..size).map(|_| interval(self, max) as usize).collect()
    }
}
