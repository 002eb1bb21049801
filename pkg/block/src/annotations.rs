//! `annotations.parquet`: what clients attached to a block's profiles, one row
//! per (profile ID, annotation), sorted by ID. Written only when a profile has
//! annotations (`meta.stats.annotations` counts the rows), so blocks without
//! any cost no extra object and no extra request.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::{
    array::{Array, ArrayRef, AsArray, FixedSizeBinaryArray, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use bytes::Bytes;
use ember_model::{ProfileId, ingest::Annotation};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ulid::Ulid;

use crate::{Error, Result};

/// The annotations of a block's profiles, by profile ID (each series' row ID,
/// see [`ember_model::series_profile_id`]); each list sorted and unique.
pub type Annotations = BTreeMap<ProfileId, Arc<[Annotation]>>;

pub(crate) const ANNOTATIONS_FILE: &str = "annotations.parquet";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::FixedSizeBinary(16), false),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]))
});

/// Returns the number of rows `annotations` takes in the file.
pub(crate) fn rows(annotations: &Annotations) -> usize {
    annotations.values().map(|a| a.len()).sum()
}

/// Returns the rows of `annotations`, never empty: a block without
/// annotations has no file.
pub(crate) fn batch(annotations: &Annotations) -> Result<RecordBatch> {
    let rows = || {
        annotations
            .iter()
            .flat_map(|(id, a)| a.iter().map(|a| (*id, a)))
    };
    let ids = FixedSizeBinaryArray::try_from_iter(rows().map(|(id, _)| id.to_be_bytes()))?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(StringArray::from_iter_values(rows().map(|(_, a)| &a.key))),
        Arc::new(StringArray::from_iter_values(rows().map(|(_, a)| &a.value))),
    ];
    Ok(RecordBatch::try_new(SCHEMA.clone(), columns)?)
}

pub(crate) fn decode(ulid: Ulid, bytes: Bytes) -> Result<Annotations> {
    let corrupt = |message: String| Error::Corrupt {
        block: ulid.to_string(),
        message,
    };
    let mut lists: BTreeMap<ProfileId, Vec<Annotation>> = BTreeMap::new();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    for batch in reader {
        let batch = batch?;
        if batch.num_columns() != 3 {
            return Err(corrupt(format!(
                "annotations.parquet has {} columns, not 3",
                batch.num_columns()
            )));
        }
        let ids = batch
            .column(0)
            .as_fixed_size_binary_opt()
            .filter(|a| a.value_length() == 16)
            .ok_or_else(|| corrupt("annotations.parquet: id is not 16 bytes".into()))?;
        let (Some(keys), Some(values)) = (
            batch.column(1).as_string_opt::<i32>(),
            batch.column(2).as_string_opt::<i32>(),
        ) else {
            return Err(corrupt(
                "annotations.parquet: key or value is not text".into(),
            ));
        };
        for i in 0..ids.len() {
            let id = ProfileId::from_be_bytes(ids.value(i).try_into().expect("16 bytes"));
            lists.entry(id).or_default().push(Annotation {
                key: keys.value(i).to_owned(),
                value: values.value(i).to_owned(),
            });
        }
    }
    Ok(lists.into_iter().map(|(id, a)| (id, a.into())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write;

    fn annotation(key: &str, value: &str) -> Annotation {
        Annotation {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn round_trips() {
        let mut a = Annotations::new();
        a.insert(7, vec![annotation("k", "v"), annotation("l", "")].into());
        a.insert(
            u128::MAX,
            vec![annotation("pyroscope.ingest.throttled", "{}")].into(),
        );
        let batch = batch(&a).unwrap();
        let bytes = write::parquet_bytes(
            &SCHEMA,
            batch.columns().to_vec(),
            write::base_props().build(),
        )
        .unwrap();
        assert_eq!(decode(Ulid::nil(), bytes).unwrap(), a);
        assert_eq!(rows(&a), 3);
    }

    #[test]
    fn a_file_of_another_shape_is_corrupt() {
        let bytes = write::parquet_bytes(
            &Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
            write::base_props().build(),
        )
        .unwrap();
        let err = decode(Ulid::nil(), bytes).unwrap_err();
        assert!(err.to_string().contains("annotations.parquet"), "{err}");
    }
}
