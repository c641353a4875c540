//! A source with computed columns: wraps a connector's source and appends (in declared order)
//! the columns `CREATE TABLE` computes from the others (`c AS expr`), before watermarks are
//! generated, so a watermark can be declared on a computed column (as Flink's Nexmark DDL
//! does with `dateTime AS CASE ... END`). A changelog's row-kind column passes through, last.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion_physical_expr::PhysicalExpr;
use weir_engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir_engine::BoxError;

/// How one output column is made.
#[derive(Clone)]
pub enum ColumnSource {
    /// Column `i` of the connector's batches.
    Read(usize),
    /// Computed over the connector's batch.
    Computed(Arc<dyn PhysicalExpr>),
}

/// A source whose batches get computed columns.
pub struct ComputedColumnsSource {
    inner: Arc<dyn SourceFactory>,
    schema: SchemaRef,
    columns: Arc<Vec<ColumnSource>>,
    description: String,
}

impl ComputedColumnsSource {
    pub fn new(
        inner: Arc<dyn SourceFactory>,
        schema: SchemaRef,
        columns: Vec<ColumnSource>,
        description: String,
    ) -> Self {
        ComputedColumnsSource {
            inner,
            schema,
            columns: Arc::new(columns),
            description,
        }
    }
}

impl SourceFactory for ComputedColumnsSource {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn describe(&self) -> String {
        format!("{} + computed {}", self.inner.describe(), self.description)
    }

    fn changelog(&self) -> weir_engine::changelog::ChangelogMode {
        self.inner.changelog()
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        Ok(Box::new(ComputedColumnsReader {
            inner: self.inner.create_reader(split)?,
            schema: SchemaRef::clone(&self.schema),
            columns: Arc::clone(&self.columns),
        }))
    }
}

struct ComputedColumnsReader {
    inner: Box<dyn SourceReader>,
    schema: SchemaRef,
    columns: Arc<Vec<ColumnSource>>,
}

impl ComputedColumnsReader {
    fn compute(&self, batch: &RecordBatch) -> Result<RecordBatch, BoxError> {
        let arrays = self
            .columns
            .iter()
            .map(|column| match column {
                ColumnSource::Read(i) => Ok(ArrayRef::clone(batch.column(*i))),
                ColumnSource::Computed(expr) => {
                    Ok(expr.evaluate(batch)?.into_array(batch.num_rows())?)
                }
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        let arrays = arrays
            .into_iter()
            .zip(self.schema.fields())
            .map(|(array, field)| {
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    arrow::compute::cast(&array, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(
            SchemaRef::clone(&self.schema),
            arrays,
        )?)
    }
}

impl SourceReader for ComputedColumnsReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            match self.inner.next_batch().await? {
                Some(SourceBatch { batch, partition }) => Ok(Some(SourceBatch {
                    batch: self.compute(&batch)?,
                    partition,
                })),
                None => Ok(None),
            }
        })
    }

    fn partitions(&self) -> Vec<u32> {
        self.inner.partitions()
    }

    fn positions(&self) -> Positions {
        self.inner.positions()
    }
}
