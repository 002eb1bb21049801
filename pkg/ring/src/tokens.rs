//! Tokens: the points on the hash ring an ingester owns.
//!
//! Tokens are a pure function of the member's name and token count, so every
//! process computes the same ring from the gossiped names alone and the
//! metadata stays far below memberlist's 512-byte limit. The price is that a
//! renamed ingester gets new tokens; ingester names are stable (hostname-port,
//! or the StatefulSet pod name), and its data moves with it anyway.

use std::collections::HashSet;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Returns `num_tokens` distinct tokens for the member `name`, sorted.
///
/// Token `i` is the low 32 bits of xxh3-64 of the name with seed `i`; on the
/// rare collision the next seed is tried, so the count is always exact.
pub fn tokens(name: &str, num_tokens: usize) -> Vec<u32> {
    let mut seen = HashSet::with_capacity(num_tokens);
    let mut tokens = Vec::with_capacity(num_tokens);
    let mut seed = 0u64;
    while tokens.len() < num_tokens {
        // Truncation is the point: the ring is the u32 space.
        let token = xxh3_64_with_seed(name.as_bytes(), seed) as u32;
        if seen.insert(token) {
            tokens.push(token);
        }
        seed += 1;
    }
    tokens.sort_unstable();
    tokens
}

/// All ingesters' tokens in ring order, each with the index of its owner.
///
/// Built only when the set of ingesters changes; states and heartbeats are
/// read from the member table at lookup time so that heartbeat updates, which
/// arrive every few seconds from every member, do not rebuild it.
#[derive(Debug, Default)]
pub(crate) struct TokenRing {
    /// `(token, owner)` sorted by token, then owner; `owner` indexes `owners`.
    tokens: Vec<(u32, u32)>,
    /// Names of the ingesters, sorted.
    owners: Vec<String>,
}

impl TokenRing {
    /// Returns the ring of the given ingesters and their tokens.
    pub(crate) fn new<'a>(ingesters: impl IntoIterator<Item = (&'a str, &'a [u32])>) -> Self {
        let mut owners = Vec::new();
        let mut tokens = Vec::new();
        for (owner, (name, owned)) in ingesters.into_iter().enumerate() {
            let owner = u32::try_from(owner).expect("fewer than 2^32 ingesters");
            owners.push(name.to_owned());
            tokens.extend(owned.iter().map(|&token| (token, owner)));
        }
        tokens.sort_unstable();
        TokenRing { tokens, owners }
    }

    /// Returns the owners of the ring in the order a write for `key` tries
    /// them: clockwise from the first token >= `key`, wrapping past `u32::MAX`,
    /// each owner once.
    pub(crate) fn walk(&self, key: u32) -> impl Iterator<Item = &str> {
        let start = self.tokens.partition_point(|&(token, _)| token < key);
        let mut seen = vec![false; self.owners.len()];
        self.tokens[start..]
            .iter()
            .chain(&self.tokens[..start])
            .filter_map(move |&(_, owner)| {
                let owner = owner as usize;
                (!std::mem::replace(&mut seen[owner], true)).then_some(owner)
            })
            // Stops the walk once every owner has been seen.
            .take(self.owners.len())
            .map(|owner| self.owners[owner].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_distinct_and_sorted() {
        let a = tokens("ingester-0", 128);
        assert_eq!(a, tokens("ingester-0", 128));
        assert_eq!(a.len(), 128);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert_ne!(a, tokens("ingester-1", 128));
        assert!(tokens("x", 0).is_empty());
    }

    #[test]
    fn tokens_spread_over_the_ring() {
        // 8 ingesters x 128 tokens: every eighth of the u32 space gets a share
        // close to 1/8, and no ingester owns far more of the ring than another.
        let names: Vec<String> = (0..8).map(|i| format!("ingester-{i}")).collect();
        let all: Vec<Vec<u32>> = names.iter().map(|n| tokens(n, 128)).collect();
        let mut buckets = [0usize; 8];
        for token in all.iter().flatten() {
            buckets[(*token >> 29) as usize] += 1;
        }
        for count in buckets {
            assert!(
                (64..=192).contains(&count),
                "bucket has {count} of 1024 tokens"
            );
        }

        // Ownership: the range (previous token, token] belongs to the token's owner.
        let ring = TokenRing::new(
            names
                .iter()
                .map(String::as_str)
                .zip(all.iter().map(Vec::as_slice)),
        );
        let mut owned = [0u64; 8];
        let n = ring.tokens.len();
        for i in 0..n {
            let (token, owner) = ring.tokens[i];
            let prev = ring.tokens[(i + n - 1) % n].0;
            owned[owner as usize] += u64::from(token.wrapping_sub(prev));
        }
        let share = (1u64 << 32) / 8;
        for o in owned {
            assert!(
                o > share / 2 && o < share * 2,
                "ingester owns {o} of {share}"
            );
        }
    }

    #[test]
    fn walk_goes_clockwise_from_the_first_token_at_or_after_the_key() {
        let ring = TokenRing::new([
            ("a", &[10u32, 40][..]),
            ("b", &[20, 50][..]),
            ("c", &[30][..]),
        ]);
        let walk = |key| ring.walk(key).collect::<Vec<_>>();
        assert_eq!(walk(0), ["a", "b", "c"]);
        assert_eq!(walk(10), ["a", "b", "c"]);
        assert_eq!(walk(11), ["b", "c", "a"]);
        assert_eq!(walk(35), ["a", "b", "c"]);
        assert_eq!(
            walk(45),
            ["b", "a", "c"],
            "wraps around past the last token"
        );
        assert_eq!(walk(u32::MAX), ["a", "b", "c"]);
        assert!(TokenRing::default().walk(7).next().is_none());
    }
}
