//! Which blocks a query reads, and opening them.
//!
//! The choice is made on metas alone: those of blocks opened before (kept in
//! the querier's map) and, for the others, the bucket index's. So a cold
//! query opens (reads `series.parquet` of) only the blocks it reads — in
//! range, not superseded, and for each raw block either it or the
//! pre-aggregated copy the plan can use — not every block of the tenant. A
//! block in neither (uploaded since the index was written) is opened to learn
//! its meta. Metas taken from the index are kept, so the index is read again
//! only for blocks new to the querier.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ember_block::{Block, BlockMeta};
use ember_query::Plan;
use futures::StreamExt;
use tracing::warn;
use ulid::Ulid;

use crate::{BLOCKS_IN_PARALLEL, Querier};

/// A block a query reads: the raw block, or a pre-aggregated copy in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Choice {
    read: Ulid,
    raw: Ulid,
}

/// Chooses among `metas` the blocks a query of `plan` reads, by raw block ULID.
fn choose(plan: &Plan, metas: &[&BlockMeta]) -> Vec<Choice> {
    let superseded = ember_block::superseded(metas.iter().copied());
    // A compacted block and the blocks it was made of coexist until the
    // compactor deletes the latter: read only the compacted one.
    let (copies, mut raw): (Vec<&BlockMeta>, Vec<&BlockMeta>) = metas
        .iter()
        .copied()
        .filter(|m| m.overlaps(plan.start, plan.end) && !superseded.contains(&m.ulid))
        .partition(|m| m.is_downsampled());
    raw.sort_by_key(|m| m.ulid);
    raw.into_iter()
        .map(|m| Choice {
            read: plan
                .copy_for(m, copies.iter().copied())
                .map_or(m.ulid, |c| c.ulid),
            raw: m.ulid,
        })
        .collect()
}

impl Querier {
    /// Returns the blocks among `candidates` (listed, complete or not) that a
    /// query of `plan` reads, opened, in the order of their raw blocks' ULIDs.
    pub(crate) async fn blocks_for(
        &self,
        tenant: &str,
        plan: &Plan,
        candidates: Vec<Ulid>,
    ) -> Vec<Arc<Block>> {
        let (mut opened, unopened) = self.opened(tenant, candidates);
        let indexed = self.metas_of(tenant, &unopened).await;
        let unindexed = unopened.into_iter().filter(|u| !indexed.contains_key(u));
        for block in self
            .open(tenant, unindexed.map(|u| (u, None)).collect())
            .await
        {
            opened.insert(block.meta.ulid, block);
        }
        let metas: Vec<&BlockMeta> = opened
            .values()
            .map(|b| &b.meta)
            .chain(indexed.values())
            .collect();
        let chosen = choose(plan, &metas);
        let to_open: Vec<_> = chosen
            .iter()
            .filter(|c| !opened.contains_key(&c.read))
            .map(|c| (c.read, indexed.get(&c.read).cloned()))
            .collect();
        for block in self.open(tenant, to_open).await {
            opened.insert(block.meta.ulid, block);
        }
        // A copy that did not open leaves its raw block to answer.
        let fallbacks: Vec<_> = chosen
            .iter()
            .filter(|c| !opened.contains_key(&c.read) && !opened.contains_key(&c.raw))
            .map(|c| (c.raw, indexed.get(&c.raw).cloned()))
            .collect();
        for block in self.open(tenant, fallbacks).await {
            opened.insert(block.meta.ulid, block);
        }
        chosen
            .iter()
            .filter_map(|c| opened.get(&c.read).or_else(|| opened.get(&c.raw)))
            .cloned()
            .collect()
    }

    /// Opens blocks `ulids` of `tenant` (those opened before come from the
    /// querier's map), in ULID order; see [`Querier::open`] for what is left out.
    pub(crate) async fn open_blocks(&self, tenant: &str, ulids: Vec<Ulid>) -> Vec<Arc<Block>> {
        let (opened, unopened) = self.opened(tenant, ulids);
        let mut metas = self.metas_of(tenant, &unopened).await;
        let unopened = unopened
            .into_iter()
            .map(|u| (u, metas.remove(&u)))
            .collect();
        let mut blocks: Vec<_> = opened.into_values().collect();
        blocks.extend(self.open(tenant, unopened).await);
        blocks.sort_by_key(|b| b.meta.ulid);
        blocks
    }

    /// Returns the metas of `ulids` (blocks not opened) that the bucket index
    /// gives: kept from before, or read from it when some are new, then kept.
    async fn metas_of(&self, tenant: &str, ulids: &[Ulid]) -> HashMap<Ulid, BlockMeta> {
        let mut metas: HashMap<Ulid, BlockMeta> = {
            let known = self.metas.lock().expect("poisoned");
            ulids
                .iter()
                .filter_map(|u| Some((*u, known.get(&(tenant.to_owned(), *u))?.clone())))
                .collect()
        };
        let unknown: HashSet<Ulid> = ulids
            .iter()
            .filter(|u| !metas.contains_key(u))
            .copied()
            .collect();
        if unknown.is_empty() {
            return metas;
        }
        let mut index = self.index_metas(tenant).await;
        index.retain(|u, _| unknown.contains(u));
        let mut known = self.metas.lock().expect("poisoned");
        for (ulid, meta) in &index {
            known.insert((tenant.to_owned(), *ulid), meta.clone());
        }
        metas.extend(index);
        metas
    }

    /// Splits `ulids` into the blocks opened before, by ULID, and the others.
    fn opened(&self, tenant: &str, ulids: Vec<Ulid>) -> (HashMap<Ulid, Arc<Block>>, Vec<Ulid>) {
        let map = self.blocks.lock().expect("poisoned");
        let mut opened = HashMap::new();
        let mut unopened = Vec::new();
        for ulid in ulids {
            match map.get(&(tenant.to_owned(), ulid)) {
                Some(b) => {
                    opened.insert(ulid, b.clone());
                }
                None => unopened.push(ulid),
            }
        }
        (opened, unopened)
    }

    /// Opens `blocks` concurrently, each with its meta when known (from the
    /// bucket index), and keeps them in the querier's map. A block still
    /// being uploaded (no `meta.json` yet) is left out, as is an unreadable
    /// one, with a warning.
    async fn open(&self, tenant: &str, blocks: Vec<(Ulid, Option<BlockMeta>)>) -> Vec<Arc<Block>> {
        // Futures that own what they use (a future borrowing `self` here
        // would make the RPC futures not `Send`, rust-lang/rust#102211).
        let opens: Vec<_> = blocks
            .into_iter()
            .map(|(ulid, meta)| {
                let (store, cache, tenant) =
                    (self.store.clone(), self.cache.clone(), tenant.to_owned());
                let from_index = meta.is_some();
                async move {
                    let opened = Block::open_with_meta(store, cache, &tenant, ulid, meta).await;
                    (ulid, from_index, opened)
                }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(opens)
            .buffered(BLOCKS_IN_PARALLEL)
            .collect()
            .await;
        let mut out = Vec::new();
        for (ulid, from_index, result) in results {
            match result {
                Ok(block) => {
                    let block = Arc::new(block);
                    self.metrics.blocks_opened.inc();
                    if from_index {
                        self.metrics.blocks_opened_from_index.inc();
                    }
                    let key = (tenant.to_owned(), ulid);
                    // An opened block holds its meta: the index's copy can go.
                    self.metas.lock().expect("poisoned").remove(&key);
                    self.blocks
                        .lock()
                        .expect("poisoned")
                        .insert(key, block.clone());
                    out.push(block);
                }
                Err(ember_block::Error::ObjectStore(object_store::Error::NotFound { .. })) => {
                    // Still being uploaded: meta.json is written last.
                }
                Err(e) => {
                    warn!(tenant, block = %ulid, error = %e, "skipping unreadable block");
                }
            }
        }
        out
    }

    /// Returns the metas of `tenant`'s bucket index, or none (blocks are then
    /// opened from their `meta.json`): an index is only a shortcut.
    async fn index_metas(&self, tenant: &str) -> HashMap<Ulid, BlockMeta> {
        match ember_block::read_index(&self.store, tenant).await {
            Ok(index) => index.map(|i| i.into_metas()).unwrap_or_default(),
            Err(e) => {
                self.metrics.bucket_index_failures.inc();
                warn!(tenant, error = %e, "reading the bucket index failed; opening blocks from their meta.json");
                HashMap::new()
            }
        }
    }
}
