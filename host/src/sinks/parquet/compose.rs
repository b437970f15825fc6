//! Joins staged parts (each a whole Parquet file of one epoch's rows) into one file by copying
//! their encoded column chunks: no decoding, no re-compression. Row groups, page indexes and
//! the Arrow schema metadata carry over.

use std::sync::Arc;

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// One file made of `parts`, in order. All parts must have the same schema.
pub fn concat(parts: &[Bytes]) -> Result<Vec<u8>> {
    let read = |part: &Bytes| {
        ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(part)
    };
    let first = read(parts.first().ok_or_else(|| general("no parts to join"))?)?;
    let schema = first.file_metadata().schema_descr().root_schema_ptr();
    let key_values = first
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let size = parts.iter().map(Bytes::len).sum();
    let mut writer = SerializedFileWriter::new(
        Vec::with_capacity(size),
        schema,
        Arc::new(WriterProperties::builder().build()),
    )?;
    for part in parts {
        let metadata = read(part)?;
        if metadata.file_metadata().schema() != first.file_metadata().schema() {
            return Err(general("staged parts of one file differ in schema"));
        }
        let (column_indexes, offset_indexes) = (metadata.column_index(), metadata.offset_index());
        for (rg_index, row_group) in metadata.row_groups().iter().enumerate() {
            let mut out = writer.next_row_group()?;
            for (col_index, column) in row_group.columns().iter().enumerate() {
                out.append_column(
                    part,
                    ColumnCloseResult {
                        bytes_written: column.compressed_size() as u64,
                        rows_written: row_group.num_rows() as u64,
                        metadata: column.clone(),
                        bloom_filter: None,
                        column_index: column_indexes
                            .and_then(|pi| pi.get(rg_index)?.get(col_index))
                            .cloned(),
                        offset_index: offset_indexes
                            .and_then(|pi| pi.get(rg_index)?.get(col_index))
                            .cloned(),
                    },
                )?;
            }
            out.close()?;
        }
    }
    for key_value in key_values {
        writer.append_key_value_metadata(key_value);
    }
    writer.into_inner()
}

fn general(message: &str) -> ParquetError {
    ParquetError::General(message.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn part(ids: &[i64]) -> Bytes {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("n{i}")),
                )),
            ),
        ])
        .unwrap();
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        Bytes::from(writer.into_inner().unwrap())
    }

    #[test]
    fn joins_parts_in_order_keeping_the_arrow_schema() {
        let joined = concat(&[part(&[1, 2]), part(&[3]), part(&[4, 5, 6])]).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(joined))
            .unwrap()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.extend(column.values().iter().copied());
        }
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
        assert!(concat(&[]).is_err());
    }
}
