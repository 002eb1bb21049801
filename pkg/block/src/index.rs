//! The bucket index: the `meta.json` of every complete block of a tenant in
//! one object, `<tenant>/bucket-index.json`, rewritten by the compactor after
//! each pass.
//!
//! A querier that opens the blocks of a long range would otherwise read one
//! `meta.json` per block listed, raw blocks and pre-aggregated copies alike,
//! only to choose which to read; on object storage that is most of a cold
//! query's requests. The index only saves those reads: blocks are still
//! found by listing, so a block uploaded since the index was written is read
//! as before, and one deleted since is not listed and ignored. Metas never
//! change once written, so an entry is never stale for a block still there.

use std::{collections::HashMap, sync::Arc};

use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{BlockMeta, Result};

/// The index's name in a tenant's prefix.
pub const INDEX_FILE: &str = "bucket-index.json";

/// The metas of a tenant's complete blocks, as the compactor last saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketIndex {
    /// The format, [`BucketIndex::VERSION`]; a reader ignores later ones.
    pub version: u32,
    /// When it was written, in unix seconds.
    pub updated_at: i64,
    pub blocks: Vec<BlockMeta>,
}

impl BucketIndex {
    /// The format this binary writes and reads.
    pub const VERSION: u32 = 1;

    /// Returns the metas by block.
    pub fn into_metas(self) -> HashMap<Ulid, BlockMeta> {
        self.blocks.into_iter().map(|m| (m.ulid, m)).collect()
    }
}

/// Returns the object path of `tenant`'s bucket index.
pub fn index_path(tenant: &str) -> Path {
    Path::from(format!("{tenant}/{INDEX_FILE}"))
}

/// Reads `tenant`'s bucket index: `None` when there is none yet, or when a
/// later format wrote it.
pub async fn read_index(store: &Arc<dyn ObjectStore>, tenant: &str) -> Result<Option<BucketIndex>> {
    let bytes = match store.get(&index_path(tenant)).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let index: BucketIndex = serde_json::from_slice(&bytes)?;
    Ok((index.version <= BucketIndex::VERSION).then_some(index))
}

/// Writes `tenant`'s bucket index of `blocks`, written at `updated_at`
/// (unix seconds), in one PUT: readers see the old index or the new one.
pub async fn write_index(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    mut blocks: Vec<BlockMeta>,
    updated_at: i64,
) -> Result<()> {
    blocks.sort_by_key(|m| m.ulid);
    let index = BucketIndex {
        version: BucketIndex::VERSION,
        updated_at,
        blocks,
    };
    store
        .put(
            &index_path(tenant),
            PutPayload::from(serde_json::to_vec(&index)?),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn meta(ulid: u128) -> BlockMeta {
        BlockMeta {
            version: crate::FORMAT_VERSION,
            ulid: Ulid(ulid),
            min_time_nanos: 1,
            max_time_nanos: 2,
            stats: Default::default(),
            compaction: crate::Compaction {
                level: 1,
                sources: vec![Ulid(ulid)],
            },
            source: "test".into(),
            partitions: Vec::new(),
            resolution_nanos: 0,
        }
    }

    #[tokio::test]
    async fn an_index_reads_back_as_written_and_is_none_before_the_first() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        assert_eq!(read_index(&store, "t").await.unwrap(), None);
        write_index(&store, "t", vec![meta(2), meta(1)], 7)
            .await
            .unwrap();
        let index = read_index(&store, "t").await.unwrap().unwrap();
        assert_eq!(index.updated_at, 7);
        assert_eq!(index.blocks, vec![meta(1), meta(2)]);
        assert_eq!(read_index(&store, "other").await.unwrap(), None);
        // A later format is left alone rather than misread.
        let mut later = index.clone();
        later.version = BucketIndex::VERSION + 1;
        let bytes = serde_json::to_vec(&later).unwrap();
        store.put(&index_path("t"), bytes.into()).await.unwrap();
        assert_eq!(read_index(&store, "t").await.unwrap(), None);
    }
}
