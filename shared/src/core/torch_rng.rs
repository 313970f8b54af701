//! PyTorch's CPU random generator, replicated in Rust (book section 2.6, data loaders).
//!
//! `torch.utils.data.DataLoader(shuffle=True)` draws a fresh seed from the global generator
//! for every epoch, seeds a *new* `torch.Generator` with it and calls `torch.randperm` on
//! that generator. LibTorch's C API (and so `tch`) has no user-created generators, so this
//! module re-implements the two pieces that matter: PyTorch's `mt19937` engine
//! (`at::mt19937`, seeded like `CPUGeneratorImpl::set_current_seed`) and the CPU
//! `randperm` kernel (a Fisher-Yates pass drawing `random() % (n - i)`). Tests compare the
//! permutations with values printed by PyTorch 2.13.

const STATE_SIZE: usize = 624;
const SHIFT_SIZE: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The 32-bit Mersenne Twister as PyTorch seeds and runs it (`at::mt19937`).
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; STATE_SIZE],
    next: usize,
}

impl Mt19937 {
    /// Seeds like `torch.Generator().manual_seed(seed)`: only the low 32 bits are used.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; STATE_SIZE];
        state[0] = seed as u32;
        for j in 1..STATE_SIZE {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(j as u32);
        }
        Self { state, next: STATE_SIZE }
    }

    fn twist(&mut self) {
        for i in 0..STATE_SIZE {
            let y = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % STATE_SIZE] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + SHIFT_SIZE) % STATE_SIZE] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// The next 32-bit output (`CPUGeneratorImpl::random()`).
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= STATE_SIZE {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Two outputs combined, high word first (`CPUGeneratorImpl::random64()`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }
}

/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` on the CPU.
pub fn randperm(n: usize, seed: u64) -> Vec<usize> {
    randperm_with(n, &mut Mt19937::new(seed))
}

/// `torch.randperm(n, generator=g)` on the CPU, advancing `g` as PyTorch does.
pub fn randperm_with(n: usize, rng: &mut Mt19937) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    // PyTorch keeps 32-bit draws for small n and switches to 64-bit ones for huge n.
    let small = (n as u64) < (u32::MAX / 20) as u64;
    for i in 0..n.saturating_sub(1) {
        let remaining = (n - i) as u64;
        let draw = if small { rng.next_u32() as u64 } else { rng.next_u64() };
        perm.swap(i, i + (draw % remaining) as usize);
    }
    perm
}

/// `int(torch.empty((), dtype=torch.int64).random_().item())`: one draw from the global
/// generator that `tch::manual_seed` seeds, as `DataLoader` makes for every epoch.
pub fn draw_global_seed() -> u64 {
    let seed = tch::Tensor::empty([], (tch::Kind::Int64, tch::Device::Cpu)).random_().int64_value(&[]);
    seed as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_sequence() {
        // The C++ standard fixes the 10,000th output of mt19937 seeded with 5489.
        let mut rng = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn randperm_matches_pytorch() {
        // torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        assert_eq!(randperm(10, 123), [2, 0, 8, 1, 3, 7, 4, 9, 5, 6]);
        // Seeds above 32 bits keep their low word, as in at::mt19937.
        assert_eq!(randperm(20, (1 << 40) + 5), [11, 0, 9, 10, 3, 15, 14, 18, 8, 2, 19, 6, 5, 12, 1, 7, 4, 17, 16, 13]);
    }

    #[test]
    fn global_draws_match_pytorch() {
        // torch.manual_seed(123); torch.empty((), dtype=torch.int64).random_() twice.
        let _rng = crate::core::device::global_rng_lock();
        crate::core::device::seed_everything(123);
        assert_eq!(draw_global_seed(), 3624216819017203053);
        assert_eq!(draw_global_seed(), 5278339153051796802);
    }

    #[test]
    fn randperm_is_a_permutation() {
        let mut perm = randperm(1000, 7);
        assert_ne!(perm, (0..1000).collect::<Vec<_>>());
        perm.sort_unstable();
        assert_eq!(perm, (0..1000).collect::<Vec<_>>());
        assert!(randperm(0, 1).is_empty());
        assert_eq!(randperm(1, 1), vec![0]);
    }
}
